// Errors particular to the token domain. They extend the shared typed set, so callers that
// switch on `code` keep working.
import { InvalidStateTransitionError, type ErrorDetails } from '../../db/errors.js';

/**
 * The seller's available balance (ledger balance minus active reservations) does not cover the
 * quantity: nothing was reserved or written. `details` carries requested and available.
 */
export class InsufficientBalanceError extends InvalidStateTransitionError {
  constructor(message: string, details: ErrorDetails & { requested: bigint; available: bigint }) {
    super(message, { field: 'quantity', ...details });
  }
}
