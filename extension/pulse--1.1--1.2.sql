/* extension/pulse--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pulse UPDATE TO '1.2'" to load this file. \quit

-- 1.2: exactness fixes found by the differential oracles (pages, cursors,
-- aggregates, fingerprints), keyed cache tags.  Each section below names the
-- C file it belongs to, as in pulse--1.0--1.1.sql.
