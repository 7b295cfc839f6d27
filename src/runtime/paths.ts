/** Platform paths: the default data directory (as the original server's) and the files kept in it. */
import os from 'node:os';
import path from 'node:path';

export function defaultDataDir(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string {
  const home = os.homedir();
  if (platform === 'win32') return path.join(env['APPDATA'] ?? path.join(home, 'AppData', 'Roaming'), 'TabAgent', 'db');
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'TabAgent', 'db');
  return path.join(env['XDG_DATA_HOME'] ?? path.join(home, '.local', 'share'), 'TabAgent', 'db');
}

/** Where the long-running server listens for native-messaging relays (a named pipe on Windows). */
export function ipcSocketPath(dataDir: string, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return `\\\\.\\pipe\\tabagent-${Buffer.from(dataDir).toString('hex').slice(-32)}`;
  return path.join(dataDir, 'tabagent.sock');
}
