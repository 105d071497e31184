// The access log: one line a request, written when the response has been sent. Fastify's own
// request logging writes two (arrival and completion) and its `req`/`res` serialisers drop the
// route template, so its two lines are replaced by this one.
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

export class AccessLog extends LogController {
  override incomingRequest(): void {
    // Nothing on arrival: the completion line carries everything.
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const line = {
      method: request.method,
      url: request.url,
      // The template, not the URL: what the metrics label and what a search groups by.
      route: request.routeOptions.url ?? 'unmatched',
      statusCode: reply.statusCode,
      responseTime: reply.elapsedTime,
      remoteAddress: request.ip,
    };
    // An error here is the response failing after it began (a dropped connection, a stream
    // error); errors handled into a response are logged by the error handler.
    if (error) request.log.error({ ...line, err: { message: error.message } }, 'request errored');
    else request.log.info(line, 'request completed');
  }
}
