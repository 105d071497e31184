// `coffer serve`: open (and migrate) the database, listen, and shut down cleanly on SIGINT or
// SIGTERM: stop accepting, drain in-flight requests, close the pool.
import { pino } from 'pino';
import type { CofferConfig } from '../config/config.js';
import { ConfigError } from '../db/errors.js';
import { redactUrl } from '../db/url.js';
import { createService } from '../server/compose.js';

export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  '*.password',
  '*.apiKey',
  '*.secret',
  '*.token',
];

export async function serve(config: CofferConfig): Promise<void> {
  const logger = pino({ level: config.log.level, redact: { paths: LOG_REDACT, censor: '[redacted]' } });
  const trustProxy = config.server.trustProxy;
  if (trustProxy === true || typeof trustProxy === 'number') {
    // Neither form checks who sent the header: a client that reaches this port directly chooses its address.
    logger.warn(
      { trustProxy },
      'server.trustProxy takes the client address from X-Forwarded-For without checking the sender: safe only if every request comes through your proxies (list their addresses instead to check)',
    );
  }
  const service = await createService(config, logger);
  const { app } = service;
  const coffer = service.services.coffer;
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (e) {
    await service.close();
    const err = e as { code?: string; message: string };
    throw new ConfigError(
      `cannot listen on ${config.server.host}:${config.server.port}: ${err.code === 'EADDRINUSE' ? 'address already in use (set --port or COFFER_PORT)' : err.message}`,
      { field: 'server.port' },
    );
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.server.port;
  process.stdout.write(
    `coffer listening on http://${config.server.host}:${port} (${coffer.engine.label}: ${redactUrl(config.database.url)})\n`,
  );

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: draining requests');
      service
        .close()
        .catch((e: unknown) => logger.error({ err: (e as Error).message }, 'error during shutdown'))
        .finally(resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
