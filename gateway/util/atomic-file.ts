/**
 * Writing a small file so that a crash leaves either the old or the new content, never a
 * torn one: write a temporary file beside it, fsync it, rename it over the target, fsync the
 * directory so that the rename itself survives a power loss (rename(2) is atomic; without
 * the directory fsync the new name may not be on disk yet).
 *
 * The temporary file is `<path>.tmp`, so one left by a crash is overwritten by the next write;
 * with `uniqueTemp` it also carries the pid and a random suffix, for files that two processes
 * may write at once (two CLIs on one session store). A failed write removes its temporary file
 * and rethrows.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644); 0o600 for secrets such as session tokens. */
  mode?: number;
  /** A temporary name of this process's own (see the module comment). */
  uniqueTemp?: boolean;
}

/** Writes `content` to `path` atomically and durably (see the module comment). */
export function writeFileAtomic(path: string, content: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const tmp = opts.uniqueTemp ? `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp` : `${path}.tmp`;
  try {
    const fd = openSync(tmp, opts.uniqueTemp ? 'wx' : 'w', opts.mode ?? 0o644);
    try {
      const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}

/** Makes a directory's entries (a rename, a new file) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
