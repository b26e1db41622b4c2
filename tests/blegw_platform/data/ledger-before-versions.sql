-- A ledger file made by the platform before the schema had a version table (its code as it
-- was then: accounts, a module, an enrollment code, a terminal, a settled, a declined, a
-- pending and a code-paid transaction), dumped with sqlite3's iterdump.
BEGIN TRANSACTION;
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL
        CHECK (typeof(balance_minor) = 'integer' AND balance_minor >= 0
               AND balance_minor <= 100000000000000000)
);
INSERT INTO "accounts" VALUES('alice','EUR',675);
INSERT INTO "accounts" VALUES('shop','EUR',325);
INSERT INTO "accounts" VALUES('bob','USD',50);
CREATE TABLE enrollment_codes (
    code_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id),
    expires_at INTEGER NOT NULL,
    module_id BLOB
);
INSERT INTO "enrollment_codes" VALUES(X'6363636363636363636363636363636363636363636363636363636363636363','bob',2000000000,NULL);
CREATE TABLE issuance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'),
    kind TEXT NOT NULL CHECK (kind IN ('issuance', 'adjustment', 'opening')),
    created REAL NOT NULL
);
INSERT INTO "issuance" VALUES(1,'alice','EUR',1000,'adjustment',1.7954614036823906898e+09);
INSERT INTO "issuance" VALUES(2,'bob','USD',50,'adjustment',1.79546140368400144581e+09);
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
INSERT INTO "modules" VALUES(X'6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D','alice','gw-1',1,X'63657274',2,1,X'7272727272727272727272727272727272727272727272727272727272727272');
CREATE TABLE postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id BLOB NOT NULL REFERENCES transactions(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL
        CHECK (typeof(amount_minor) = 'integer' AND amount_minor != 0),
    created REAL NOT NULL
);
INSERT INTO "postings" VALUES(1,X'01010101010101010101010101010101','alice','EUR',-300,1.79546140368983173367e+09);
INSERT INTO "postings" VALUES(2,X'01010101010101010101010101010101','shop','EUR',300,1.79546140368983173367e+09);
INSERT INTO "postings" VALUES(3,X'04040404040404040404040404040404','alice','EUR',-25,1.79546140369391202923e+09);
INSERT INTO "postings" VALUES(4,X'04040404040404040404040404040404','shop','EUR',25,1.79546140369391202923e+09);
CREATE TABLE terminal_payees (
    terminal TEXT NOT NULL REFERENCES terminals(name),
    account TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (terminal, account)
);
INSERT INTO "terminal_payees" VALUES('till-1','shop');
CREATE TABLE terminals (
    name TEXT PRIMARY KEY,
    key_hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
INSERT INTO "terminals" VALUES('till-1',X'6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B6B',1.79546140368691325194e+09,NULL);
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
INSERT INTO "transactions" VALUES(X'01010101010101010101010101010101','key-000001','h','alice','shop',300,'EUR','o','d',1,X'6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D',X'65656565656565656565656565656565',1700000060,X'656E76','settled','',1,1700000000.0,1.79546140368983173367e+09,'till-1','');
INSERT INTO "transactions" VALUES(X'02020202020202020202020202020202','key-000002','h','alice','shop',50,'EUR','o','d',1,X'6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D',X'66666666666666666666666666666666',1700000060,X'656E76','declined','declined_by_user',2,1700000000.0,1.79546140369203972818e+09,'till-1','');
INSERT INTO "transactions" VALUES(X'03030303030303030303030303030303','key-000003','h','alice','shop',20,'EUR','o','d',1,X'6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D',X'67676767676767676767676767676767',1700000060,X'656E76','pending','',NULL,1700000000.0,1700000000.0,'till-1','');
INSERT INTO "transactions" VALUES(X'04040404040404040404040404040404','key-000004','h','alice','shop',25,'EUR','o','d',1,X'6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D6D',X'68686868686868686868686868686868',1700000060,X'656E76','settled','',NULL,1700000000.0,1.79546140369391202923e+09,'till-1','');
CREATE TABLE used_codes (
    code_id BLOB PRIMARY KEY CHECK (length(code_id) = 32),
    tx_id BLOB NOT NULL UNIQUE REFERENCES transactions(id),
    kind INTEGER NOT NULL,
    code_account TEXT NOT NULL,
    scanner_account TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created REAL NOT NULL
);
INSERT INTO "used_codes" VALUES(X'7171717171717171717171717171717171717171717171717171717171717171',X'04040404040404040404040404040404',1,'alice','shop',1700000060,1.79546140369382715225e+09);
CREATE UNIQUE INDEX postings_one_per_side ON postings (tx_id, amount_minor > 0);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('issuance',2);
INSERT INTO "sqlite_sequence" VALUES('postings',4);
COMMIT;
