/** A file or one of the folders on its path does not exist (ENOENT, ENOTDIR). */
export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
