/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The method table (layer 6, with method-*.c; docs/architecture.md): every request is parsed,
 * validated, authorized, acted on and answered, in that order, by one handler. Handlers may run
 * more than once for one request (after an asynchronous polkit reply the whole handler runs
 * again from the top), so nothing before the authorization step may change state.
 *
 * dispatch_current() is what the manager gives every client as ClientContext.dispatch: the
 * transport (conn.c) reaches it only through ConnOps and that table, never by including this.
 */
#pragma once

typedef struct Client Client;

/* Runs the handler for c->current. Returns 0 when the request was answered or is waiting for an
 * asynchronous step, negative errno on the daemon's own failure (the caller answers with
 * InternalError). Client mistakes are answered here and are not failures. */
int dispatch_current(Client *c);

/* The interface description of io.noiommud.Broker, embedded at build time. */
extern const char noiommu_broker_interface[];
