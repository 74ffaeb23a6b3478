/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Intrusive doubly-linked lists, in the spirit of systemd's list.h (written anew here). The
 * links live in the item, so linking and unlinking never allocate and cannot fail, and one item
 * can sit in several lists at once, each under its own name:
 *
 *   struct Conn {
 *           LIST_FIELDS(Conn, conns);          (conns_next, conns_prev: in Manager.conns)
 *           LIST_FIELDS(Conn, by_uid);         (by_uid_next, by_uid_prev: in UidCount.conns)
 *   };
 *   struct Manager {
 *           LIST_HEAD(Conn, conns);
 *   };
 *
 *   LIST_PREPEND(conns, m->conns, c);
 *   LIST_FOREACH(conns, i, m->conns)           (i may be unlinked, even freed, in the body)
 *           ...;
 *   LIST_REMOVE(conns, m->conns, c);
 *
 * The head is a plain pointer, NULL when the list is empty; an unlinked item has both links
 * NULL. The macros evaluate their arguments once.
 */
#pragma once

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

#define LIST_HEAD(t, name) t *name

#define LIST_FIELDS(t, name) t *name##_next, *name##_prev

/* Puts item first in the list at head. item must not be in this list already. Returns item. */
#define LIST_PREPEND(name, head, item)                                          \
        ({                                                                      \
                typeof(*(head)) **_head_ = &(head), *_item_ = (item);           \
                assert(_item_);                                                 \
                assert(!_item_->name##_prev && *_head_ != _item_);              \
                _item_->name##_next = *_head_;                                  \
                if (_item_->name##_next)                                        \
                        _item_->name##_next->name##_prev = _item_;              \
                _item_->name##_prev = NULL;                                     \
                *_head_ = _item_;                                               \
                _item_;                                                         \
        })

/* Takes item out of the list at head and clears its links. item must be in that list (see
 * LIST_IS_LINKED()). Returns item. */
#define LIST_REMOVE(name, head, item)                                           \
        ({                                                                      \
                typeof(*(head)) **_head_ = &(head), *_item_ = (item);           \
                assert(_item_);                                                 \
                if (_item_->name##_next)                                        \
                        _item_->name##_next->name##_prev = _item_->name##_prev; \
                if (_item_->name##_prev)                                        \
                        _item_->name##_prev->name##_next = _item_->name##_next; \
                else {                                                          \
                        assert(*_head_ == _item_);                              \
                        *_head_ = _item_->name##_next;                          \
                }                                                               \
                _item_->name##_next = _item_->name##_prev = NULL;               \
                _item_;                                                         \
        })

/* Whether item is in the list at head. The first item has no prev link, hence the head. */
#define LIST_IS_LINKED(name, head, item)                                        \
        ({                                                                      \
                typeof(*(head)) *_item_ = (item);                               \
                _item_->name##_prev || (head) == _item_;                        \
        })

/* Declares i and walks the list from head. The next item is read before the body runs, so the
 * body may unlink or free i (not any other item). */
#define LIST_FOREACH(name, i, head)                                             \
        for (typeof(*(head)) *i = (head), *_next_##i = NULL;                    \
             i && ((_next_##i = i->name##_next), true);                         \
             i = _next_##i)
