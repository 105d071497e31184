// Typed refusals of the chain domain. They refine the shared codes (conflict,
// invalid_state_transition) so generic callers keep working and chain-aware callers can branch.
import { ConflictError, InvalidStateTransitionError, type ErrorDetails } from '../../db/errors.js';

/** The block does not extend the tip: the caller must reorg (or fetch the missing parent). */
export class ReorgRequiredError extends ConflictError {
  constructor(message: string, details: ErrorDetails) {
    super(message, { reason: 'reorg_required', ...details });
  }
}

/** The block is above tip + 1: the blocks between are missing. */
export class BlockGapError extends ConflictError {
  constructor(message: string, details: ErrorDetails) {
    super(message, { reason: 'gap', ...details });
  }
}

/** A reorg would replace a final block, whose undo journal has been pruned. */
export class FinalityViolationError extends InvalidStateTransitionError {
  constructor(message: string, details: ErrorDetails) {
    super(message, { reason: 'finalized', ...details });
  }
}
