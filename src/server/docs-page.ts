// A readable API reference at /docs, rendered from the OpenAPI document (no external assets).
function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

interface Op {
  summary?: string;
  tags?: string[];
  parameters?: { name: string; in: string; required: boolean; schema: unknown }[];
  requestBody?: { content: { 'application/json': { schema: unknown } } };
  'x-coffer-scope'?: string;
  security?: unknown[];
}

export function renderApiReference(doc: {
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, Op>>;
}): string {
  const byTag = new Map<string, string[]>();
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters ?? [])
        .map(
          (p) =>
            `<li><code>${esc(p.name)}</code> (${esc(p.in)}${p.required ? ', required' : ''}) <code>${esc(JSON.stringify(p.schema))}</code></li>`,
        )
        .join('');
      const body = op.requestBody
        ? `<details><summary>body schema</summary><pre>${esc(JSON.stringify(op.requestBody.content['application/json'].schema, null, 2))}</pre></details>`
        : '';
      const auth = op['x-coffer-scope'] ? `scope <code>${esc(op['x-coffer-scope'])}</code>` : 'public';
      const html = `<article><h3><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h3><p>${esc(op.summary)} — ${auth}</p>${params ? `<ul>${params}</ul>` : ''}${body}</article>`;
      const tag = op.tags?.[0] ?? 'other';
      byTag.set(tag, [...(byTag.get(tag) ?? []), html]);
    }
  }
  const sections = [...byTag.entries()].map(([tag, items]) => `<section><h2>${esc(tag)}</h2>${items.join('')}</section>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(doc.info.title)} reference</title>
<style>body{font:14px/1.5 system-ui,sans-serif;max-width:980px;margin:0 auto;padding:20px;color:#222}code,pre{font-family:ui-monospace,monospace;font-size:12px}
pre{background:#f5f5f5;padding:8px;overflow:auto}article{border-top:1px solid #ddd;padding:6px 0}.m{display:inline-block;min-width:58px;font-size:12px;padding:1px 6px;border-radius:3px;color:#fff;background:#555}
.m.get{background:#2b7a3d}.m.post{background:#1f5fa8}.m.put,.m.patch{background:#a86a1f}.m.delete{background:#a82b1f}h3{font-size:14px;margin:6px 0}</style></head>
<body><h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1><p>${esc(doc.info.description)}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code>.</p>${sections}</body></html>`;
}
