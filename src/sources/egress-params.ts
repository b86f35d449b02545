import { z } from 'zod';

/**
 * The egress parameters both entry points take: `POST /v1/egress/urls` (a JSON body, signed
 * into the token) and `GET /egress-audio` (the token's claims or the query). One schema, so
 * the two can never disagree on what a name or a chunk length may be.
 */

/** Names of rooms, tracks, participants and meetings: they become parts of object keys. */
export const EGRESS_ID_PATTERN = /^[\p{L}\p{N}._:@+-]{1,128}$/u;
export const EGRESS_ID_RULE = '1–128 letters, digits or . _ : @ + -';

/** Chunk length bounds in seconds (also those of the `livekit.groupSeconds` default). */
export const GROUP_SECONDS = { min: 0.1, max: 600 } as const;

export const egressIdSchema = z.string().regex(EGRESS_ID_PATTERN, EGRESS_ID_RULE);
export const groupSecondsSchema = z.number().min(GROUP_SECONDS.min).max(GROUP_SECONDS.max);

/** What names a stream and how it is chunked. */
export const egressParamsSchema = z
  .object({
    roomName: egressIdSchema,
    trackId: egressIdSchema.optional(),
    participant: egressIdSchema.optional(),
    meetingId: egressIdSchema.optional(),
    groupSeconds: groupSecondsSchema.optional(),
    /** Channel of the room's dual.wav this participant goes to (README, Rooms). */
    channel: z.enum(['left', 'right']).optional(),
  })
  .strict();

export type EgressParams = z.infer<typeof egressParamsSchema>;
