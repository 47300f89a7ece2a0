/**
 * A small tmpfs of its own, so a test can fill a filesystem to the last byte (a disk-full
 * test must not fill the machine's disk). Needs root (CI runs as root: .ci/run); the
 * mount is gone when the test ends, even when it failed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, openSync, writeSync, closeSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  /** Bytes an unprivileged writer can still write. */
  free(): number;
  /** Fills the filesystem (as another process would) until fewer than `leaveBytes` are free; returns the filler's path. */
  fill(leaveBytes?: number, name?: string): string;
  unmount(): void;
}

export function mountTmpfs(sizeBytes: number): Tmpfs {
  if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs and needs root (CI runs as root)');
  const dir = mkdtempSync(join(tmpdir(), 'vp-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0755`, 'tmpfs', dir]);
  const free = (): number => {
    const st = statfsSync(dir);
    return Number(st.bavail) * Number(st.bsize);
  };
  let fillers = 0;
  return {
    dir,
    free,
    fill(leaveBytes = 0, name = `filler-${++fillers}`) {
      const path = join(dir, name);
      writeFileSync(path, '');
      const fd = openSync(path, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      try {
        for (;;) {
          const room = free() - leaveBytes;
          if (room <= 0) break;
          const n = Math.min(chunk.length, room);
          try {
            if (writeSync(fd, chunk, 0, n) < n) break;
          } catch {
            break; // ENOSPC: full
          }
        }
      } finally {
        closeSync(fd);
      }
      return path;
    },
    unmount() {
      try {
        execFileSync('umount', ['-l', dir]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
