-- A version-2 ledger as the platform wrote it before its card and payment-mode tables were part
-- of the schema (made by that version's code: two accounts, a payment mode, an enrolled card).
BEGIN TRANSACTION;
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL
        CHECK (typeof(balance_minor) = 'integer' AND balance_minor >= 0
               AND balance_minor <= 100000000000000000)
);
INSERT INTO "accounts" VALUES('carol','EUR',10000);
INSERT INTO "accounts" VALUES('shop','EUR',0);
CREATE TABLE card_enrollments (
    card_ref BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    enrolled REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
, revoke_hash BLOB);
INSERT INTO "card_enrollments" VALUES(X'791B90B8B8C7D27A','carol','gw-card',1.79547459498922657968e+09,1,NULL);
CREATE TABLE card_relays (
    relay_id BLOB PRIMARY KEY,
    tx_id BLOB NOT NULL,
    step TEXT NOT NULL CHECK (step IN ('challenge', 'request')),
    answered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE card_replay (
    entry BLOB PRIMARY KEY,
    last_valid INTEGER NOT NULL
);
CREATE TABLE enrollment_codes (
    code_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id),
    expires_at INTEGER NOT NULL,
    module_id BLOB
);
CREATE TABLE issuance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'),
    kind TEXT NOT NULL CHECK (kind IN ('issuance', 'adjustment', 'opening')),
    created REAL NOT NULL
);
INSERT INTO "issuance" VALUES(1,'carol','EUR',10000,'adjustment',1.79547459495668745039e+09);
CREATE TABLE modules (
    module_id BLOB NOT NULL,
    account TEXT NOT NULL REFERENCES accounts(id),
    gateway_id TEXT NOT NULL,
    suite INTEGER NOT NULL,
    certificate BLOB NOT NULL,
    last_counter INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    revoke_hash BLOB,
    PRIMARY KEY (module_id, suite)
);
CREATE TABLE payment_modes (
    account TEXT PRIMARY KEY,
    no_verification_up_to INTEGER NOT NULL CHECK (no_verification_up_to >= 0),
    fingerprint_from INTEGER CHECK (fingerprint_from IS NULL OR fingerprint_from > 0)
);
INSERT INTO "payment_modes" VALUES('carol',500,10000);
CREATE TABLE postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id BLOB NOT NULL REFERENCES transactions(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL
        CHECK (typeof(amount_minor) = 'integer' AND amount_minor != 0),
    created REAL NOT NULL
);
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied REAL NOT NULL
);
INSERT INTO "schema_migrations" VALUES(1,1.79547459464704442025e+09);
INSERT INTO "schema_migrations" VALUES(2,1.79547459464741444587e+09);
CREATE TABLE terminal_payees (
    terminal TEXT NOT NULL REFERENCES terminals(name),
    account TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (terminal, account)
);
CREATE TABLE terminals (
    name TEXT PRIMARY KEY,
    key_hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE transactions (
    id BLOB PRIMARY KEY,
    idempotency_key TEXT UNIQUE NOT NULL,
    request_hash TEXT NOT NULL,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    order_reference TEXT NOT NULL,
    order_description TEXT NOT NULL,
    suite INTEGER NOT NULL,
    module_id BLOB,
    nonce BLOB UNIQUE NOT NULL,
    expires_at INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    counter INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
, terminal TEXT, progress TEXT NOT NULL DEFAULT '');
CREATE TABLE used_codes (
    code_id BLOB PRIMARY KEY CHECK (length(code_id) = 32),
    tx_id BLOB NOT NULL UNIQUE REFERENCES transactions(id),
    kind INTEGER NOT NULL,
    code_account TEXT NOT NULL,
    scanner_account TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE used_dynamic_codes (
    payment_id BLOB PRIMARY KEY CHECK (length(payment_id) = 32),
    merchant_device BLOB NOT NULL,
    perturbation BLOB NOT NULL,
    request_hash TEXT NOT NULL,
    terminal TEXT NOT NULL,
    tx_id BLOB NOT NULL UNIQUE REFERENCES transactions(id),
    created REAL NOT NULL,
    UNIQUE (merchant_device, perturbation)
);
CREATE UNIQUE INDEX postings_one_per_side ON postings (tx_id, amount_minor > 0);
CREATE INDEX used_dynamic_codes_request ON used_dynamic_codes (request_hash);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('issuance',1);
COMMIT;
