// The hooks domains register with the operator commands (interfaces in hooks.ts). Add one
// import and one entry per check or rule; `coffer doctor` and `coffer trim` pick them up, and a
// hook whose tables are not in the database yet is skipped with a note, never an error.
import type { DoctorCheck, RetentionRule } from './hooks.js';
import { undoJournalRule } from './retention-undo.js';
import { auditChainCheck } from '../domains/audit/doctor.js';
import { chainCursorCheck } from '../domains/chain/doctor.js';
import { unconfirmedInvoicesRule, unconfirmedMintsRule } from '../domains/tokens/retention-rules.js';

/**
 * Domain checks run by `coffer doctor` after its built-in ones (migrations, incomplete,
 * schema, integrity, foreign-keys, indexes, queries, locks).
 *
 * Registration point for the audit domain: the chain verification (verifyAuditLog in
 * src/domains/audit/verify.ts) as a DoctorCheck named "audit.chain", requires
 * ['audit_log', 'audit_head'], one error finding with firstBad's message when the log does not
 * verify. The chain domain's cursor-versus-blocks check goes here the same way.
 */
export const DOCTOR_CHECKS: readonly DoctorCheck[] = [auditChainCheck, chainCursorCheck];

/**
 * Retention rules run by `coffer trim` (a dry run unless --apply).
 *
 * Registration points: the token domain's trimUnconfirmedMints / trimUnconfirmedInvoices
 * (src/domains/tokens/retention.ts; apply = one call with limit = opts.batchSize and olderThan
 * from a setting such as "tokens.unconfirmed.maxAgeHours") and the chain domain's raw
 * transactions below a height window go here, next to the undo-journal rule.
 */
export const RETENTION_RULES: readonly RetentionRule[] = [undoJournalRule, unconfirmedMintsRule, unconfirmedInvoicesRule];
