/**
 * Replacing a file so that a crash or power cut leaves either the old or the new content, never a mix: write
 * a temporary file beside it, fsync it, give it its mode, rename it over the target, then fsync the
 * directory so the rename itself is durable. Used by every Node-side store: FileKvStore (the simulator's
 * NVS), CloudStore, the local CA's files and the local cloud's cloud.json.
 *
 * Errors: the Node error of the failing step is thrown as is, after the temporary file is removed; callers
 * wrap it in their own typed error. A failed directory fsync is returned, not thrown: the data is in place
 * by then, and some file systems cannot fsync a directory (EINVAL); only the power-cut guarantee of the
 * rename is lost.
 * Not here: locking (one writer per file is the callers' rule), reading.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface AtomicWriteOptions {
  /** The file's mode, exactly (not filtered by the umask). Default 0o600. */
  mode?: number;
  /** The file's length when larger than `data`: the rest reads as zeros, made by extending the file
   *  (ftruncate: a hole, nothing written or flushed for it). FileKvStore's free space. */
  size?: number;
  /** The temporary file (default `{file}.{pid}.tmp`); it must be in the same directory as `file`. */
  tmp?: string;
}

/** Writes `data` to `file` atomically; returns the directory fsync's error, if any (see the header). */
export function writeFileAtomic(file: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Error | undefined {
  const tmp = options.tmp ?? `${file}.${process.pid}.tmp`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, "w", options.mode ?? 0o600);
    fs.writeFileSync(fd, data);
    if (options.size !== undefined && options.size > data.length) fs.ftruncateSync(fd, options.size);
    fs.fchmodSync(fd, options.mode ?? 0o600); // openSync's mode is filtered by the umask
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) {
      try { fs.closeSync(fd); } catch { /* the write error is the one to report */ }
    }
    try { fs.rmSync(tmp, { force: true }); } catch { /* a directory in the way stays; the write error is reported */ }
    throw e;
  }
  return syncDirectory(path.dirname(file));
}

/** fsync of a directory, so a rename in it survives a power cut. Returns the error instead of throwing. */
export function syncDirectory(dir: string): Error | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
