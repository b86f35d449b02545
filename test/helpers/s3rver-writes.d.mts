/** Replaces s3rver's putObject and putPart with versions that answer once the bytes are written. */
export function installDurableWrites(): void;
