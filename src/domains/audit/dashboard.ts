// The audit panel of the dashboard: the newest entries, and the chain verified end to end. A
// full verification walks every entry, so it runs at most once a minute per database and the
// panel shows the last result.
import type { Coffer } from '../../db/store.js';
import type { AuditPanel } from '../../server/dashboard/data.js';
import { AUDIT_LOG, decodeEntry } from './log.js';
import { verifyAuditLog, type VerifyReport } from './verify.js';

const VERIFY_EVERY_MS = 60_000;
const lastVerify = new WeakMap<Coffer, { at: number; report: Promise<VerifyReport> }>();

function verified(coffer: Coffer): Promise<VerifyReport> {
  const cached = lastVerify.get(coffer);
  if (cached && Date.now() - cached.at < VERIFY_EVERY_MS) return cached.report;
  const report = verifyAuditLog(coffer);
  lastVerify.set(coffer, { at: Date.now(), report });
  report.catch(() => lastVerify.delete(coffer));
  return report;
}

export async function auditPanel(coffer: Coffer): Promise<AuditPanel> {
  const [report, recent] = await Promise.all([
    verified(coffer),
    coffer.read(
      async (tx) =>
        (await tx.db.selectFrom(AUDIT_LOG).selectAll().orderBy('seq', 'desc').limit(10).execute()).map((r) => decodeEntry(tx, r)),
      {
        op: 'dashboard.audit',
      },
    ),
  ]);
  return {
    ok: report.ok,
    length: report.verified.toString(),
    head: report.ok ? (report.headHash ?? '') : report.recordedHead.hash,
    ...(report.firstBad ? { firstBad: `${report.firstBad.seq} (${report.firstBad.kind})` } : {}),
    recent: recent.map((e) => ({
      seq: e.seq.toString(),
      at: e.at.toISOString(),
      actor: `${e.actor.type}:${e.actor.id}`,
      action: e.action,
      entity: `${e.entity} ${e.entityId}`,
    })),
  };
}
