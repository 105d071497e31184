// /openapi.json, generated from the same route objects that validate requests.
import { z } from 'zod';
import type { RouteSpec } from './route.js';

function schema(t: z.ZodType | undefined): Record<string, unknown> | undefined {
  if (!t) return undefined;
  const s = z.toJSONSchema(t, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete s.$schema;
  return s;
}

function parameters(where: 'path' | 'query', obj: z.ZodObject<z.ZodRawShape> | undefined): unknown[] {
  if (!obj) return [];
  const s = schema(obj) as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, sch]) => ({
    name,
    in: where,
    required: where === 'path' || (s.required ?? []).includes(name),
    schema: sch,
  }));
}

export function openApiDocument(routes: readonly RouteSpec[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const op: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, '').replace(/[^A-Za-z0-9]+(.)?/g, (_m, ch: string | undefined) => (ch ? ch.toUpperCase() : ''))}`,
      parameters: [...parameters('path', r.params), ...parameters('query', r.query)],
      responses: {
        ...Object.fromEntries(
          (r.upsert
            ? [
                ['200', 'replaced'],
                ['201', 'created'],
              ]
            : [[String(r.status ?? 200), 'success']]
          ).map(([code, description]) => [code, { description, content: { 'application/json': { schema: schema(r.response) } } }]),
        ),
        '400': { $ref: '#/components/responses/Error' },
        ...(r.auth === 'public'
          ? {}
          : { '401': { $ref: '#/components/responses/Error' }, '403': { $ref: '#/components/responses/Error' } }),
      },
      ...(r.auth === 'public' ? { security: [] } : { 'x-coffer-scope': `${r.auth.domain}:${r.auth.level}` }),
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: schema(r.body) } } };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      ...info,
      description: 'Amounts are decimal strings (exact integers in base units); hashes are lowercase hex; times are ISO-8601 UTC.',
    },
    paths,
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API key from `coffer keys create`' } },
      responses: {
        Error: {
          description: 'error',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  error: {
                    type: 'object',
                    properties: {
                      code: { type: 'string' },
                      message: { type: 'string' },
                      field: { type: 'string' },
                      requestId: { type: 'string' },
                    },
                    required: ['code', 'message', 'requestId'],
                  },
                },
              },
            },
          },
        },
      },
    },
  };
}
