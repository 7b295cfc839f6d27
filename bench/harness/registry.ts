/** Every profile by name: the harness's own, and those exported (`profiles`) by the per-transport bench scripts. */
import { busInThread, busWorker } from '../bus.js';
import { baselineLlama, baselineUws, baselineWrtcEcho } from './profiles/baselines.js';
import { httpChatStream, httpHealth } from './profiles/http.js';
import { nativeChat, nativeHealth } from './profiles/native.js';
import { storageRead, storageWrite } from './profiles/storage.js';
import { webrtcChatStream, webrtcRequest } from './profiles/webrtc.js';
import { wsChatStream, wsRequest } from './profiles/ws.js';
import type { Profile } from './types.js';

export const builtinProfiles: Profile[] = [
  httpHealth,
  httpChatStream,
  wsRequest,
  wsChatStream,
  nativeHealth,
  nativeChat,
  webrtcRequest,
  webrtcChatStream,
  storageWrite,
  storageRead,
  busInThread,
  busWorker,
  baselineUws,
  baselineLlama,
  baselineWrtcEcho,
] as Profile[];

/** Bench scripts of the transport and engine issues; each may export `profiles: Profile[]`. */
export const pluginModules = ['http', 'native', 'webrtc', 'storage', 'inference-engine', 'inference-pool'];

export interface Registry {
  profiles: Map<string, Profile & { source: string }>;
  /** Plug-in modules that failed to import, with why. */
  problems: string[];
}

/** Imports the plug-in modules (only when asked: they are other helpers' code and may be mid-edit). */
export async function loadRegistry(withPlugins: boolean): Promise<Registry> {
  const profiles = new Map<string, Profile & { source: string }>();
  for (const p of builtinProfiles) profiles.set(p.name, { ...p, source: 'harness' });
  const problems: string[] = [];
  if (!withPlugins) return { profiles, problems };
  for (const m of pluginModules) {
    let mod: { profiles?: unknown };
    try {
      mod = (await import(`../${m}.js`)) as { profiles?: unknown };
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'ERR_MODULE_NOT_FOUND' || !String((err as Error).message).includes(`${m}.js`)) problems.push(`bench/${m}.ts: ${(err as Error).message.split('\n')[0]}`);
      continue;
    }
    if (!Array.isArray(mod.profiles)) continue;
    for (const p of mod.profiles as Profile[]) {
      if (!p || typeof p.name !== 'string' || typeof p.request !== 'function' || typeof p.setup !== 'function') {
        problems.push(`bench/${m}.ts: a profile without name/setup/request`);
        continue;
      }
      // A transport's own bench knows its carrier best: its profile replaces a built-in one of the same name.
      profiles.set(p.name, { ...p, source: `bench/${m}.ts` });
    }
  }
  return { profiles, problems };
}
