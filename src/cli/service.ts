/** install-service / uninstall-service: start the server with the user's session (a systemd user unit, a launchd agent, or a Windows logon task). */
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TabAgentError } from '../protocol/errors.js';

export const SERVICE_NAME = 'tabagent';
export const LAUNCHD_LABEL = 'com.tabagent.server';

export interface ServiceOptions {
  /** The `tabagent serve` command line the service runs: node, the CLI script, then its arguments. */
  command: string[];
  platform?: NodeJS.Platform;
  home?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ServiceFile {
  path: string;
  action: 'written' | 'unchanged' | 'removed' | 'absent';
}

export interface ServiceResult {
  files: ServiceFile[];
  /** What the user runs next (enable and start, or stop and disable); on Windows the whole install is this. */
  next: string[];
}

/** The unit's location follows systemd's user search path ($XDG_CONFIG_HOME/systemd/user). */
export function systemdUnitPath(home: string, env: NodeJS.ProcessEnv): string {
  return path.join(env['XDG_CONFIG_HOME'] ?? path.join(home, '.config'), 'systemd', 'user', `${SERVICE_NAME}.service`);
}

export function launchdPlistPath(home: string): string {
  return path.join(home, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`);
}

/** systemd splits ExecStart on spaces and treats `%` and `$` specially; quote and escape each argument. */
function systemdQuote(arg: string): string {
  const escaped = arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\;]/.test(arg) || escaped !== arg ? `"${escaped}"` : arg;
}

export function systemdUnit(command: string[]): string {
  return [
    '# Written by `tabagent install-service`; remove with `tabagent uninstall-service`.',
    '[Unit]',
    'Description=TabAgent local AI server',
    'After=network.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${command.map(systemdQuote).join(' ')}`,
    // A crash restarts the server; a clean stop (SIGTERM from systemctl) does not.
    'Restart=on-failure',
    'RestartSec=2',
    // The server drains requests on SIGTERM within shutdown.drain_timeout_ms (10 s by default).
    'TimeoutStopSec=30',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function launchdPlist(command: string[], logFile: string): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<!-- Written by `tabagent install-service`; remove with `tabagent uninstall-service`. -->',
    '<plist version="1.0">',
    '<dict>',
    '  <key>Label</key>',
    `  <string>${LAUNCHD_LABEL}</string>`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...command.map((a) => `    <string>${xml(a)}</string>`),
    '  </array>',
    '  <key>RunAtLoad</key>',
    '  <true/>',
    '  <key>KeepAlive</key>',
    '  <dict>',
    '    <key>SuccessfulExit</key>',
    '    <false/>',
    '  </dict>',
    '  <key>StandardErrorPath</key>',
    `  <string>${xml(logFile)}</string>`,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}

const cmdQuote = (s: string): string => `"${s.replace(/"/g, '""')}"`;

/** Windows has no per-user service manager of this kind; a scheduled task at logon does the same job. */
export function windowsTaskCommand(command: string[]): string {
  // schtasks takes the whole command line as one /TR argument, so the inner quotes are escaped with backslashes.
  const line = command.map((a) => `\\"${a}\\"`).join(' ');
  return `schtasks /Create /F /SC ONLOGON /RL LIMITED /TN ${cmdQuote('TabAgent Server')} /TR "${line}"`;
}

function writeIfChanged(file: string, content: string): ServiceFile {
  if (existsSync(file) && readFileSync(file, 'utf8') === content) return { path: file, action: 'unchanged' };
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content, { mode: 0o644 });
  chmodSync(file, 0o644);
  return { path: file, action: 'written' };
}

function lexists(file: string): boolean {
  try {
    lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

function remove(file: string): ServiceFile {
  if (!lexists(file)) return { path: file, action: 'absent' };
  rmSync(file);
  return { path: file, action: 'removed' };
}

export function installService(opts: ServiceOptions): ServiceResult {
  if (opts.command.length === 0) throw new TabAgentError('VALIDATION_ERROR', 'the service needs a command to run');
  const platform = opts.platform ?? process.platform;
  const home = opts.home ?? os.homedir();
  const env = opts.env ?? process.env;
  if (platform === 'linux') {
    const unit = systemdUnitPath(home, env);
    return {
      files: [writeIfChanged(unit, systemdUnit(opts.command))],
      next: ['systemctl --user daemon-reload', `systemctl --user enable --now ${SERVICE_NAME}.service`, `journalctl --user -u ${SERVICE_NAME} -f   # its logs`],
    };
  }
  if (platform === 'darwin') {
    const plist = launchdPlistPath(home);
    const log = path.join(home, 'Library', 'Logs', 'TabAgent', 'server.log');
    mkdirSync(path.dirname(log), { recursive: true });
    return {
      files: [writeIfChanged(plist, launchdPlist(opts.command, log))],
      next: [`launchctl bootstrap gui/$(id -u) ${plist}`, `tail -f ${log}   # its logs`],
    };
  }
  if (platform === 'win32') return { files: [], next: [windowsTaskCommand(opts.command), `schtasks /Run /TN ${cmdQuote('TabAgent Server')}`] };
  throw new TabAgentError('BAD_REQUEST', `install-service supports Linux (systemd), macOS (launchd) and Windows (a logon task), not '${platform}'; run \`tabagent serve --no-stdio\` from your own service manager`);
}

export function uninstallService(opts: Omit<ServiceOptions, 'command'>): ServiceResult {
  const platform = opts.platform ?? process.platform;
  const home = opts.home ?? os.homedir();
  const env = opts.env ?? process.env;
  if (platform === 'linux') {
    const unit = systemdUnitPath(home, env);
    // `systemctl --user enable` links the unit from default.target.wants; a dangling link would be an error at every login.
    const wanted = path.join(path.dirname(unit), 'default.target.wants', `${SERVICE_NAME}.service`);
    const files = [remove(unit)];
    if (lexists(wanted)) files.push(remove(wanted));
    return { files, next: [`systemctl --user stop ${SERVICE_NAME}.service   # if it is running`, 'systemctl --user daemon-reload'] };
  }
  if (platform === 'darwin') {
    const plist = launchdPlistPath(home);
    return { files: [remove(plist)], next: [`launchctl bootout gui/$(id -u)/${LAUNCHD_LABEL}   # if it was loaded`] };
  }
  if (platform === 'win32') return { files: [], next: [`schtasks /Delete /F /TN ${cmdQuote('TabAgent Server')}`] };
  throw new TabAgentError('BAD_REQUEST', `uninstall-service supports Linux, macOS and Windows, not '${platform}'`);
}
