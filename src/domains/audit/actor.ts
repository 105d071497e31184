// Who made a change: an API key (by its public id), a user (by id) or the system (a named
// component such as "cli:alice" or "secrets.rotate"). Every audit entry and history row has one.
import { z } from 'zod';
import { ValidationError } from '../../db/errors.js';

export const ACTOR_TYPES = ['api_key', 'user', 'system'] as const;
export type ActorType = (typeof ACTOR_TYPES)[number];

export interface Actor {
  readonly type: ActorType;
  readonly id: string;
}

const ActorSchema = z.object({
  type: z.enum(ACTOR_TYPES),
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces'),
});

/** Validates an actor (ValidationError naming actor.type or actor.id). */
export function checkActor(actor: unknown): Actor {
  const r = ActorSchema.safeParse(actor);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = ['actor', ...issue.path.map(String)].join('.');
    throw new ValidationError(`${field}: ${issue.message}`, { field });
  }
  return r.data;
}

export const systemActor = (id: string): Actor => checkActor({ type: 'system', id });
export const userActor = (id: bigint | string): Actor => checkActor({ type: 'user', id: String(id) });
export const apiKeyActor = (keyId: string): Actor => checkActor({ type: 'api_key', id: keyId });
