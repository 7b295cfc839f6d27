/** /openapi.json and Swagger UI at /docs, served from the swagger-ui-dist files on disk (no CDN: the server works offline). */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { TabAgentError } from '../../protocol/errors.js';
import type { ListenerContext } from './context.js';
import { buildOpenApi } from './openapi.js';

const require = createRequire(import.meta.url);

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
  'index.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
  'oauth2-redirect.html': 'text/html; charset=utf-8',
  'oauth2-redirect.js': 'text/javascript; charset=utf-8',
};

/** Points Swagger UI at this server's own document instead of the petstore example. */
const INITIALIZER = `window.onload = function () {
  window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], plugins: [SwaggerUIBundle.plugins.DownloadUrl], layout: 'StandaloneLayout' });
};
`;

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'";

export function bindDocs(lc: ListenerContext): void {
  const dir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  const cache = new Map<string, Buffer>();
  const file = (name: string): Buffer => {
    let buf = cache.get(name);
    if (!buf) cache.set(name, (buf = readFileSync(path.join(dir, name))));
    return buf;
  };
  let openapi: string | undefined;
  lc.bind(
    'GET',
    '/openapi.json',
    (ex) => {
      openapi ??= JSON.stringify(buildOpenApi(lc.operations));
      ex.send(200, 'application/json', openapi);
    },
    { operationId: 'openapi', summary: 'This OpenAPI 3.1 document.', tags: ['docs'] },
  );
  lc.bind('GET', '/docs', (ex) => ex.send(301, 'text/plain', 'see /docs/', [['Location', '/docs/']]), {
    operationId: 'docs_redirect',
    summary: 'Redirects to /docs/.',
    tags: ['docs'],
    contentType: 'text/plain',
  });
  lc.bind('GET', '/docs/', (ex) => ex.send(200, FILES['index.html']!, file('index.html'), [['Content-Security-Policy', CSP]]), {
    operationId: 'docs',
    summary: 'Swagger UI for this server.',
    tags: ['docs'],
    contentType: 'text/html',
  });
  lc.bind('GET', '/docs/swagger-initializer.js', (ex) => ex.send(200, 'text/javascript; charset=utf-8', INITIALIZER), {
    operationId: 'docs_initializer',
    summary: 'Swagger UI start-up script.',
    tags: ['docs'],
    contentType: 'text/javascript',
  });
  lc.bind(
    'GET',
    '/docs/{file}',
    (ex, params) => {
      const name = params['file']!;
      const type = FILES[name];
      if (!type) return ex.fail(new TabAgentError('NOT_FOUND', `no such file in /docs: ${name}`));
      ex.send(200, type, file(name), [['Cache-Control', 'max-age=3600']]);
    },
    { operationId: 'docs_file', summary: 'Swagger UI static files (from swagger-ui-dist).', tags: ['docs'], contentType: 'application/octet-stream' },
  );
}
