// The audit domain's `coffer doctor` check: walks the hash chain (paged, read-only) and reports
// the verified length and head, or the first bad entry. Register it in src/ops/registry.ts
// (DOCTOR_CHECKS).
import type { DoctorCheck, Finding } from '../../ops/hooks.js';
import { verifyAuditLog } from './verify.js';

export const auditChainCheck: DoctorCheck = {
  name: 'audit.chain',
  domain: 'audit',
  describe: 'the audit log hash chain is unbroken from entry 1 to the recorded head',
  requires: ['audit_log', 'audit_head'],
  async run(ctx): Promise<Finding[]> {
    const r = await verifyAuditLog(ctx.coffer);
    if (r.ok) {
      return [
        {
          severity: 'ok',
          message: `audit chain verified: ${r.verified} entries, head ${r.headSeq}:${r.headHash}`,
          details: { verified: String(r.verified), head: `${r.headSeq}:${r.headHash}` },
        },
      ];
    }
    const bad = r.firstBad!;
    return [
      {
        severity: 'error',
        message: `audit chain broken at entry ${bad.seq} (${bad.kind}): ${bad.message}`,
        remedy:
          'treat as a security incident: keep this database as evidence, compare with the last anchored head (`coffer audit verify --anchor SEQ:HASH`) and a backup',
        details: { seq: String(bad.seq), kind: bad.kind, verified: String(r.verified) },
      },
    ];
  },
};
