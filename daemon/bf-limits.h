/* bf-limits.h: how much of what a worker says reaches the bus and the log
 *
 * The rule: every value a worker controls is bounded before it is
 * published in a property, a signal, a method reply or a log line, and the
 * bound is applied to the text as published (after UTF-8 repair, which can
 * triple the size of hostile input).  A D-Bus message over the bus's limit
 * (dbus-daemon's max_message_size, 32 MiB by default) makes the bus drop the
 * daemon's connection, so no single worker may get anywhere near it.
 *
 * What happens at a bound, per field:
 * - Strings (Admin, Host, Version, strings in Info, Commands values, a
 *   command's Failure, a worker's error text) are cut at a character
 *   boundary and end in %BF_TRUNCATION_MARKER.  This is informational text:
 *   refusing the worker over it would take a usable worker out of service.
 * - Non-string Info values and anything else the daemon prints for people
 *   (unknown update keys, lists, failures that are not strings) go through
 *   bf_variant_print_bounded(): cut, with the marker.
 * - Info and Commands are dictionaries: an entry whose key is too long, or
 *   that no longer fits in the dictionary's byte budget, is left out; Info
 *   then says how many were left out under %BF_INFO_DROPPED_KEY.
 * - Output is never cut: command output is the product, so a long text is
 *   split into several Output signals, each at most
 *   %BF_LIMIT_OUTPUT_CHUNK_BYTES, in order, never inside a character.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

/* Ends every string that was cut; counted within the bound. */
#define BF_TRUNCATION_MARKER "\xe2\x80\xa6[truncated]"

/* Each string a worker supplies for a property. */
#define BF_LIMIT_STRING_BYTES 4096

/* Each key of Info and Commands; an Output stream (log) name. */
#define BF_LIMIT_KEY_BYTES 256

/* Each non-string Info value, serialised; larger ones are published as
 * their (bounded) printed form. */
#define BF_LIMIT_INFO_VALUE_BYTES 4096

/* The whole Info dictionary, serialised. */
#define BF_LIMIT_INFO_BYTES (64 * 1024)

/* The Commands dictionary: entries, and bytes serialised. */
#define BF_LIMIT_COMMANDS 512
#define BF_LIMIT_COMMANDS_BYTES (64 * 1024)

/* Info key saying how many entries were left out (a `u`). */
#define BF_INFO_DROPPED_KEY "buildfleet-dropped-entries"

/* The text of one Output signal. */
#define BF_LIMIT_OUTPUT_CHUNK_BYTES (64 * 1024)

/* The printed form of an update value that is not output (file lists,
 * unknown keys); split into Output chunks like output. */
#define BF_LIMIT_UPDATE_TEXT_BYTES (256 * 1024)

/* A command's Failure property and Completed failure text. */
#define BF_LIMIT_FAILURE_BYTES (16 * 1024)

/* A worker's text quoted in an error message, a log line or a reply to
 * the worker (exception responses, unknown op or command names). */
#define BF_LIMIT_MESSAGE_BYTES 1024
