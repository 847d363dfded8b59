import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * Which of `pids` holds the loopback TCP connection from 127.0.0.1:`localPort` to `peerPort`, read
 * from Linux's /proc (the socket's inode in /proc/net/tcp, then the process whose file
 * descriptors include it). Lets a server in the test tell which child process sent a request;
 * undefined when none of them holds it (any more).
 */
export async function socketOwner(
  localPort: number,
  peerPort: number,
  pids: readonly number[],
): Promise<number | undefined> {
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const local = `0100007F:${hex(localPort)}`;
  const peer = `0100007F:${hex(peerPort)}`;
  const table = await readFile('/proc/net/tcp', 'utf8');
  let inode: string | undefined;
  for (const line of table.split('\n')) {
    const cols = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (cols[1] === local && cols[2] === peer && cols[9] !== '0') inode = cols[9];
  }
  if (inode === undefined) return undefined;
  const target = `socket:[${inode}]`;
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === target) return pid;
    }
  }
  return undefined;
}
