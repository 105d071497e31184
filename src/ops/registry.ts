// The hooks domains register with the operator commands (interfaces in hooks.ts). Add one
// import and one entry per check or rule; `coffer doctor` and `coffer trim` pick them up, and a
// hook whose tables are not in the database yet is skipped with a note, never an error.
import type { DoctorCheck, RetentionRule } from './hooks.js';
import { undoJournalRule } from './retention-undo.js';

/**
 * Domain checks run by `coffer doctor` after its built-in checks (integrity, schema parity,
 * migration drift, unused indexes, long queries and lock waits).
 *
 * Registration point for the audit domain: its chain verification, e.g.
 *   import { auditChainCheck } from '../domains/audit/doctor.js';   → add auditChainCheck below
 * and for the chain domain a cursor-versus-blocks check, the same way.
 */
export const DOCTOR_CHECKS: readonly DoctorCheck[] = [];

/**
 * Retention rules run by `coffer trim` (a dry run unless --apply).
 *
 * Registration points: the chain domain's raw-transaction window and the token domain's old
 * unconfirmed rows (e.g. unconfirmed mints past their expiry) go here, next to the undo rule.
 */
export const RETENTION_RULES: readonly RetentionRule[] = [undoJournalRule];
