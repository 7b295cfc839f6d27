/** install-native-host / uninstall-native-host: the host manifest and launcher in each browser's per-user location. */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TabAgentError } from '../../protocol/errors.js';

export const HOST_NAME = 'com.tabagent.host';
export const Browsers = ['chrome', 'chromium', 'edge', 'brave', 'firefox'] as const;
export type Browser = (typeof Browsers)[number];

export interface InstallOptions {
  browser: string;
  extensionIds: string[];
  /** A browser profile root (--user-data-dir): the manifest goes to DIR/NativeMessagingHosts/. */
  userDataDir?: string;
  /** Baked into the launcher so the relay finds the server without loading the config. */
  dataDir: string;
  socketPath?: string;
  configFile?: string;
  platform?: NodeJS.Platform;
  home?: string;
  env?: NodeJS.ProcessEnv;
}

export interface FileAction {
  path: string;
  action: 'written' | 'unchanged' | 'removed' | 'absent';
}

export interface InstallResult {
  files: FileAction[];
  /** Windows: the registry command to run (the manifest location is a registry value there). */
  registryCommand?: string;
  manifest: Record<string, unknown>;
}

const linuxDirs: Record<Browser, string> = {
  chrome: '.config/google-chrome/NativeMessagingHosts',
  chromium: '.config/chromium/NativeMessagingHosts',
  edge: '.config/microsoft-edge/NativeMessagingHosts',
  brave: '.config/BraveSoftware/Brave-Browser/NativeMessagingHosts',
  firefox: '.mozilla/native-messaging-hosts',
};
const macDirs: Record<Browser, string> = {
  chrome: 'Library/Application Support/Google/Chrome/NativeMessagingHosts',
  chromium: 'Library/Application Support/Chromium/NativeMessagingHosts',
  edge: 'Library/Application Support/Microsoft Edge/NativeMessagingHosts',
  brave: 'Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts',
  firefox: 'Library/Application Support/Mozilla/NativeMessagingHosts',
};
const windowsKeys: Record<Browser, string> = {
  chrome: 'HKCU\\Software\\Google\\Chrome\\NativeMessagingHosts',
  chromium: 'HKCU\\Software\\Chromium\\NativeMessagingHosts',
  edge: 'HKCU\\Software\\Microsoft\\Edge\\NativeMessagingHosts',
  brave: 'HKCU\\Software\\BraveSoftware\\Brave-Browser\\NativeMessagingHosts',
  firefox: 'HKCU\\Software\\Mozilla\\NativeMessagingHosts',
};

function parseBrowser(name: string): Browser {
  if ((Browsers as readonly string[]).includes(name)) return name as Browser;
  throw new TabAgentError('VALIDATION_ERROR', `--browser '${name}' is not supported; use one of ${Browsers.join(', ')}`);
}

/** Where the manifest and launcher go for this browser and platform. */
export function hostDir(browser: Browser, opts: Pick<InstallOptions, 'userDataDir' | 'platform' | 'home' | 'env'>): string {
  if (opts.userDataDir) return path.join(path.resolve(opts.userDataDir), 'NativeMessagingHosts');
  const platform = opts.platform ?? process.platform;
  const home = opts.home ?? os.homedir();
  if (platform === 'win32') {
    const appData = (opts.env ?? process.env)['APPDATA'] ?? path.join(home, 'AppData', 'Roaming');
    return path.join(appData, 'TabAgent', 'native-host', browser);
  }
  return path.join(home, platform === 'darwin' ? macDirs[browser] : linuxDirs[browser]);
}

function validateIds(browser: Browser, ids: string[]): string[] {
  if (ids.length === 0) throw new TabAgentError('VALIDATION_ERROR', 'give at least one --extension-id (the id of the extension allowed to use the host)');
  const unique = [...new Set(ids.map((id) => id.trim()))];
  for (const id of unique) {
    if (browser === 'firefox') {
      if (!id || /\s/.test(id)) throw new TabAgentError('VALIDATION_ERROR', `--extension-id '${id}' is not a Firefox add-on id (like tabagent@example.org)`);
    } else if (!/^[a-p]{32}$/.test(id)) {
      throw new TabAgentError('VALIDATION_ERROR', `--extension-id '${id}' is not a Chromium extension id (32 letters a-p, as shown on chrome://extensions)`);
    }
  }
  return unique;
}

const shQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const cmdQuote = (s: string): string => `"${s.replace(/"/g, '""')}"`;

function launcherText(platform: NodeJS.Platform, relayArgs: string[]): string {
  const hostMain = fileURLToPath(new URL('./host-main.js', import.meta.url));
  if (platform === 'win32') {
    return ['@echo off', `rem TabAgent native-messaging host, written by tabagent install-native-host`, `${[process.execPath, hostMain, ...relayArgs].map(cmdQuote).join(' ')} %*`, ''].join('\r\n');
  }
  return ['#!/bin/sh', '# TabAgent native-messaging host, written by `tabagent install-native-host`.', `exec ${[process.execPath, hostMain, ...relayArgs].map(shQuote).join(' ')} "$@"`, ''].join('\n');
}

/** Writes a file unless it already holds exactly this content; reports which. */
function writeIfChanged(file: string, content: string, mode: number): FileAction {
  if (existsSync(file) && readFileSync(file, 'utf8') === content) {
    chmodSync(file, mode);
    return { path: file, action: 'unchanged' };
  }
  writeFileSync(file, content, { mode });
  chmodSync(file, mode);
  return { path: file, action: 'written' };
}

export function installNativeHost(opts: InstallOptions): InstallResult {
  const browser = parseBrowser(opts.browser);
  const ids = validateIds(browser, opts.extensionIds);
  const platform = opts.platform ?? process.platform;
  const dir = hostDir(browser, opts);
  mkdirSync(dir, { recursive: true });
  const launcher = path.join(dir, platform === 'win32' ? 'tabagent-native-host.cmd' : 'tabagent-native-host');
  const relayArgs = ['--data-dir', path.resolve(opts.dataDir)];
  if (opts.socketPath) relayArgs.push('--socket', opts.socketPath);
  if (opts.configFile) relayArgs.push('--config', path.resolve(opts.configFile));
  for (const id of ids) relayArgs.push('--allow-extension', id);
  const manifest: Record<string, unknown> = { name: HOST_NAME, description: 'TabAgent local AI server', path: launcher, type: 'stdio' };
  if (browser === 'firefox') manifest['allowed_extensions'] = ids;
  else manifest['allowed_origins'] = ids.map((id) => `chrome-extension://${id}/`);
  const manifestFile = path.join(dir, `${HOST_NAME}.json`);
  const files = [writeIfChanged(launcher, launcherText(platform, relayArgs), 0o755), writeIfChanged(manifestFile, JSON.stringify(manifest, null, 2) + '\n', 0o644)];
  const result: InstallResult = { files, manifest };
  if (platform === 'win32' && !opts.userDataDir) result.registryCommand = `reg add "${windowsKeys[browser]}\\${HOST_NAME}" /ve /t REG_SZ /d "${manifestFile}" /f`;
  return result;
}

export function uninstallNativeHost(opts: Pick<InstallOptions, 'browser' | 'userDataDir' | 'platform' | 'home' | 'env'>): InstallResult {
  const browser = parseBrowser(opts.browser);
  const platform = opts.platform ?? process.platform;
  const dir = hostDir(browser, opts);
  const files: FileAction[] = [];
  for (const name of [`${HOST_NAME}.json`, platform === 'win32' ? 'tabagent-native-host.cmd' : 'tabagent-native-host']) {
    const file = path.join(dir, name);
    if (existsSync(file)) {
      rmSync(file);
      files.push({ path: file, action: 'removed' });
    } else files.push({ path: file, action: 'absent' });
  }
  const result: InstallResult = { files, manifest: {} };
  if (platform === 'win32' && !opts.userDataDir) result.registryCommand = `reg delete "${windowsKeys[browser]}\\${HOST_NAME}" /f`;
  return result;
}
