/**
 * Rules for the entries of a training job's `model.tar.gz`: only plain files and folders with
 * relative paths that stay inside the archive may be unpacked. An archive that holds anything else
 * (absolute paths, `..`, links, devices) was not written by our training container, so the whole
 * artifact is refused rather than partly unpacked. Pure: paths and entry types in, reasons out.
 */

/** tar's names for regular files (`OldFile` and `ContiguousFile` are historic variants). */
const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/** Why an entry must not be unpacked, or undefined when it is a plain file or folder inside the archive. */
export function unsafeEntryReason(entryPath: string, type: string): string | undefined {
  if (type === 'SymbolicLink') return 'a symbolic link';
  if (type === 'Link') return 'a hard link';
  if (!FILE_TYPES.has(type) && type !== 'Directory') return `a ${type} entry (only files and folders are allowed)`;
  // Windows separators count too: an extractor on another platform would honour them.
  const unixPath = entryPath.replace(/\\/g, '/');
  if (unixPath.startsWith('/') || /^[A-Za-z]:/.test(unixPath)) return 'an absolute path';
  if (unixPath.split('/').includes('..')) return 'a ".." path component';
  return undefined;
}

export function isFileEntry(type: string): boolean {
  return FILE_TYPES.has(type);
}

/** The file name when the entry sits at the archive root (`x` or `./x`), else undefined. */
export function rootFileName(entryPath: string): string | undefined {
  const parts = entryPath.split('/').filter((part) => part !== '' && part !== '.');
  return parts.length === 1 ? parts[0] : undefined;
}
