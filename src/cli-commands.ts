/** Commands besides `serve`; each returns true when it handled the command name. */
export async function runCommand(_command: string, _args: string[]): Promise<boolean> {
  return false;
}
