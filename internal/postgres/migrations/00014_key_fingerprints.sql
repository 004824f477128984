-- Safe rotation (issue 17): what the database remembers of the
-- environment keys, and which servers run with which keys.
--
-- key_fingerprints: the fingerprint (fieldcrypt.Fingerprint, an HMAC of a
-- fixed label: it reveals nothing of the key) of every environment key
-- version that was ever configured, and of the blind-index root (version
-- 0). The first server or command to hold a version records it; from then
-- on a process configured with another key under that version refuses to
-- start, and `elile config check` says so — a wrong old key is caught
-- before it answers 500 to every read of old data.
--
-- server_instances: every running server writes a row every 15 s (the
-- key versions and fingerprints it holds, its key provider, its build)
-- and deletes it when it stops; key commands refuse to change keys while
-- a live server could not follow.

-- +goose Up
CREATE TABLE key_fingerprints (
  version     integer PRIMARY KEY CHECK (version BETWEEN 0 AND 16777215),
  fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{16}$'),
  recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE server_instances (
  instance_id  uuid PRIMARY KEY,
  build        text NOT NULL CHECK (char_length(build) <= 100),
  host         text NOT NULL CHECK (char_length(host) <= 255),
  kms_provider text NOT NULL CHECK (char_length(kms_provider) <= 32),
  key_versions integer[] NOT NULL,
  fingerprints text[] NOT NULL CHECK (cardinality(fingerprints) = cardinality(key_versions)),
  started_at   timestamptz NOT NULL,
  seen_at      timestamptz NOT NULL
);

GRANT SELECT, INSERT ON key_fingerprints TO elile_platform;
GRANT SELECT, INSERT, UPDATE, DELETE ON server_instances TO elile_platform;

-- +goose Down
DROP TABLE server_instances;
DROP TABLE key_fingerprints;
