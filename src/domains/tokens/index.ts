// The token domain's public surface.
export { tokens, TokenStore } from './store.js';
export { tokenProcessors, processTokenBlock, decodePayload, TOKEN_ACTIONS, TOKEN_ACTION_VERSION } from './processors.js';
export { InsufficientBalanceError } from './errors.js';
export { verifySecp256k1 } from './signing.js';
export { mintHash, invoiceHash, offerHash } from './validate.js';
export { DEFAULT_INVOICE_TTL_MS } from './invoices.js';
export type * from './types.js';
