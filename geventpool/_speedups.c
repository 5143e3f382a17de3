/*
 * geventpool._speedups: the checkout (take) and the Lease of geventpool, in C.
 *
 * The same code as ConnectionPool.get()'s inlined path (pool.py) and
 * Lease (_lease.py), without the interpreter's per-bytecode cost.  Anything
 * off the common case (a pool not on its fast path, a custom clock that
 * returns no float, a connection due for a check, an error) is left to the
 * Python code: take() returns None, Lease.__exit__ calls pool._return().
 *
 * Slot and SlotTable stay Python classes with __slots__: setup() finds the
 * offsets of their fields from their member descriptors, so Python code and
 * this code read and write the same storage.  Like the Python code, nothing
 * here switches greenlets between taking a slot and filing it (references
 * dropped while filing are released only after the state is consistent).
 *
 * Not subinterpreter-safe (module state is static): geventpool is gevent's,
 * and gevent runs in the main interpreter.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_slots.h"
#include <stdint.h>
#include <time.h>

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int ready = 0;
static PyTypeObject *slot_type = NULL;
static PyTypeObject *table_type = NULL;
static PyTypeObject *waiter_type = NULL;
static PyObject *state_idle = NULL;
static PyObject *state_in_use = NULL;
static PyObject *getcurrent = NULL;
static PyObject *one = NULL;
static PyObject *monotonic = NULL;
static PyObject *str_append, *str_offer, *str_return, *str_table, *str_conn, *str_name, *str_lease,
    *str_number, *str_popleft, *str_switch;

/* Slot fields */
static Py_ssize_t s_conn, s_key, s_state, s_checked_out_at, s_uses, s_holder, s_lease, s_good_until,
    s_expires_at, s_last_used;
/* SlotTable fields */
static Py_ssize_t t_idle, t_waiters, t_pop_idle, t_fast, t_observed, t_usage, t_clock, t_pinging,
    t_ping_window, t_open, t_wake;
/* Waiter field */
static Py_ssize_t w_slot;

/* Replace a field, handing the old value to *old (released by the caller, later). */
static inline void
swap_field(PyObject *obj, Py_ssize_t off, PyObject *value, PyObject **old)
{
    PyObject **p = (PyObject **)((char *)obj + off);
    *old = *p;
    *p = value;
}

static int
is_true(PyObject *v)
{
    if (v == Py_True)
        return 1;
    if (v == Py_False || v == NULL || v == Py_None)
        return 0;
    return PyObject_IsTrue(v);
}

/* The pool's clock as a float: 1 and *out set; 0 (no error) if it gave no float; -1 on error. */
static int
read_clock(PyObject *table, double *out, PyObject **obj)
{
    PyObject *clock = FIELD(table, t_clock);
    if (clock == monotonic) {
        /* what time.monotonic() computes, to the same double */
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        int64_t ns = (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
        double d;
        if (ns % 1000000000LL == 0)
            d = (double)(ns / 1000000000LL);
        else
            d = (double)ns / 1e9;
        *obj = PyFloat_FromDouble(d);
        if (*obj == NULL)
            return -1;
        *out = d;
        return 1;
    }
    if (clock == NULL)
        return 0;
    PyObject *r = PyObject_CallNoArgs(clock);
    if (r == NULL)
        return -1;
    if (!PyFloat_CheckExact(r)) {
        Py_DECREF(r);
        return 0;
    }
    *out = PyFloat_AS_DOUBLE(r);
    *obj = r;
    return 1;
}

static int
as_double(PyObject *v, double *out)
{
    if (v != NULL && PyFloat_CheckExact(v)) {
        *out = PyFloat_AS_DOUBLE(v);
        return 1;
    }
    return 0;
}

/* -- Lease ------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *conn;
    PyObject *pool;
    PyObject *slot;
    PyObject *table;
} LeaseObject;

static PyTypeObject LeaseType;

static PyObject *
lease_make(PyObject *conn, PyObject *pool, PyObject *slot, PyObject *table)
{
    LeaseObject *self = PyObject_GC_New(LeaseObject, &LeaseType);
    if (self == NULL)
        return NULL;
    self->conn = Py_NewRef(conn);
    self->pool = Py_NewRef(pool);
    self->slot = Py_NewRef(slot);
    self->table = Py_NewRef(table);
    PyObject_GC_Track((PyObject *)self);
    return (PyObject *)self;
}

static PyObject *
lease_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *pool, *slot;
    static char *kwlist[] = {"pool", "slot", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Lease", kwlist, &pool, &slot))
        return NULL;
    PyObject *conn = PyObject_GetAttr(slot, str_conn);
    if (conn == NULL)
        return NULL;
    PyObject *table = PyObject_GetAttr(pool, str_table);
    if (table == NULL) {
        Py_DECREF(conn);
        return NULL;
    }
    PyObject *lease = lease_make(conn, pool, slot, table);
    Py_DECREF(conn);
    Py_DECREF(table);
    return lease;
}

static int
lease_traverse(LeaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    Py_VISIT(self->pool);
    Py_VISIT(self->slot);
    Py_VISIT(self->table);
    return 0;
}

static int
lease_clear(LeaseObject *self)
{
    Py_CLEAR(self->conn);
    Py_CLEAR(self->pool);
    Py_CLEAR(self->slot);
    Py_CLEAR(self->table);
    return 0;
}

static void
lease_dealloc(LeaseObject *self)
{
    PyObject_GC_UnTrack(self);
    lease_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The slot's current lease (borrowed), read the fast way when the slot is a Slot. */
static int
lease_is_current(LeaseObject *self)
{
    if (self->slot == NULL)
        return 0;
    if (ready && Py_IS_TYPE(self->slot, slot_type))
        return FIELD(self->slot, s_lease) == (PyObject *)self;
    PyObject *current = PyObject_GetAttr(self->slot, str_lease);
    if (current == NULL) {
        PyErr_Clear();
        return 0;
    }
    int result = current == (PyObject *)self;
    Py_DECREF(current);
    return result;
}

static PyObject *
lease_enter(LeaseObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!lease_is_current(self)) {
        PyObject *name = self->pool ? PyObject_GetAttr(self->pool, str_name) : NULL;
        if (name == NULL) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "this checkout was already returned");
            return NULL;
        }
        PyErr_Format(PyExc_ValueError, "%S: this checkout was already returned", name);
        Py_DECREF(name);
        return NULL;
    }
    return Py_NewRef(self->conn);
}

/* SlotTable.offer(slot, now) with waiters queued, as _state.py does it: the slot, still filed in
 * the table, goes to the oldest waiter, woken through the hub (its wake-up is scheduled, nothing
 * switches here).  New reference (the offer's result), or NULL on error. */
static PyObject *
hand_to_oldest(PyObject *table, PyObject *slot, PyObject *now_obj)
{
    PyObject *open = FIELD(table, t_open), *wake = FIELD(table, t_wake), *key = FIELD(slot, s_key);
    PyObject *waiters = FIELD(table, t_waiters);
    if (open == NULL || wake == NULL || wake == Py_None || key == NULL || !PyDict_CheckExact(open))
        return PyObject_CallMethodObjArgs(table, str_offer, slot, now_obj, NULL);
    PyObject *filed = PyDict_GetItemWithError(open, key);  /* borrowed */
    if (filed != slot) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;  /* closed meanwhile, or inherited through fork(): nothing done */
    }
    PyObject *waiter = PyObject_CallMethodNoArgs(waiters, str_popleft);
    if (waiter == NULL)
        return NULL;
    if (!Py_IS_TYPE(waiter, waiter_type)) {  /* not ours: its own hand() */
        PyObject *r = PyObject_CallMethod(waiter, "hand", "O", slot);
        Py_DECREF(waiter);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_TRUE;
    }
    PyObject *switch_ = PyObject_GetAttr(waiter, str_switch);
    if (switch_ == NULL) {
        Py_DECREF(waiter);
        return NULL;
    }
    PyObject *old[3];
    swap_field(slot, s_state, Py_NewRef(state_in_use), &old[0]);
    swap_field(slot, s_holder, Py_NewRef(Py_None), &old[1]);  /* until the waiter runs */
    swap_field(waiter, w_slot, Py_NewRef(slot), &old[2]);
    PyObject *r = PyObject_CallFunctionObjArgs(wake, switch_, Py_None, NULL);
    Py_DECREF(switch_);
    Py_DECREF(waiter);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(old[i]);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_TRUE;
}

/* The common case of a return (a clean return of the current lease into a pool on its fast
 * path), as Lease.__exit__ in _lease.py: 1 done, 0 not the common case, -1 error. */
static int
lease_return_fast(LeaseObject *self)
{
    PyObject *slot = self->slot, *table = self->table;
    if (!ready || slot == NULL || table == NULL || !Py_IS_TYPE(slot, slot_type)
        || !Py_IS_TYPE(table, table_type) || FIELD(slot, s_lease) != (PyObject *)self)
        return 0;
    int fast = is_true(FIELD(table, t_fast));
    if (fast <= 0)
        return fast;
    double expires_at, checked_out_at, usage, good_until = 0.0, ping_window = 0.0;
    if (!as_double(FIELD(slot, s_expires_at), &expires_at)
        || !as_double(FIELD(slot, s_checked_out_at), &checked_out_at)
        || !as_double(FIELD(table, t_usage), &usage))
        return 0;
    int pinging = is_true(FIELD(table, t_pinging));
    if (pinging < 0)
        return -1;
    if (pinging && (!as_double(FIELD(slot, s_good_until), &good_until)
                    || !as_double(FIELD(table, t_ping_window), &ping_window)))
        return 0;
    PyObject *idle = FIELD(table, t_idle), *waiters = FIELD(table, t_waiters);
    if (idle == NULL || waiters == NULL || state_idle == NULL)
        return 0;
    double now;
    PyObject *now_obj = NULL;
    int got = read_clock(table, &now, &now_obj);
    if (got <= 0)
        return got;
    if (!(now < expires_at)) {
        Py_DECREF(now_obj);
        return 0;
    }
    PyObject *usage_obj = PyFloat_FromDouble(usage + (now - checked_out_at));
    PyObject *good_until_obj = NULL;
    if (usage_obj == NULL)
        goto error;
    if (pinging && good_until >= 0) {
        double until = now + ping_window;
        good_until_obj = PyFloat_FromDouble(until < expires_at ? until : expires_at);
        if (good_until_obj == NULL)
            goto error;
    }
    Py_ssize_t waiting = PyObject_Length(waiters);
    if (waiting < 0)
        goto error;

    /* check-then-update: nothing below runs Python code until the slot is filed */
    PyObject *old[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    swap_field(slot, s_lease, Py_NewRef(Py_None), &old[0]);
    swap_field(slot, s_holder, Py_NewRef(Py_None), &old[1]);
    swap_field(table, t_usage, usage_obj, &old[2]);
    swap_field(slot, s_state, Py_NewRef(state_idle), &old[3]);
    swap_field(slot, s_last_used, Py_NewRef(now_obj), &old[4]);
    if (good_until_obj != NULL)
        swap_field(slot, s_good_until, good_until_obj, &old[5]);
    PyObject *result;
    if (waiting > 0)
        result = hand_to_oldest(table, slot, now_obj);
    else
        result = PyObject_CallMethodOneArg(idle, str_append, slot);
    Py_DECREF(now_obj);
    for (int i = 0; i < 6; i++)
        Py_XDECREF(old[i]);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 1;

error:
    Py_XDECREF(usage_obj);
    Py_XDECREF(good_until_obj);
    Py_DECREF(now_obj);
    return -1;
}

static PyObject *
lease_finish(LeaseObject *self, PyObject *exc_type, PyObject *exc)
{
    if (exc_type == Py_None) {
        int done = lease_return_fast(self);
        if (done < 0)
            return NULL;
        if (done)
            Py_RETURN_NONE;
    }
    if (self->pool == NULL) {
        PyErr_SetString(PyExc_ValueError, "this lease was cleared");
        return NULL;
    }
    PyObject *result = PyObject_CallMethodObjArgs(self->pool, str_return, (PyObject *)self, exc, NULL);
    if (result == NULL)
        return NULL;
    Py_DECREF(result);
    Py_RETURN_NONE;
}

static PyObject *
lease_exit(LeaseObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    return lease_finish(self, args[0], args[1]);
}

static PyObject *
lease_release(LeaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"error", NULL};
    PyObject *error = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1)
        error = args[0];
    else if (nkw == 1) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(kwnames, 0))
            || PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), names[0]) != 0) {
            PyErr_Format(PyExc_TypeError, "release() got an unexpected keyword argument %R",
                         PyTuple_GET_ITEM(kwnames, 0));
            return NULL;
        }
        error = args[0];
    }
    PyObject *exc_type = error == Py_None ? Py_None : (PyObject *)Py_TYPE(error);
    return lease_finish(self, exc_type, error);
}

static PyObject *
lease_reduce(LeaseObject *self, PyObject *Py_UNUSED(ignored))
{
    PyErr_SetString(PyExc_TypeError, "leases cannot be pickled");
    return NULL;
}

static PyObject *
lease_repr(LeaseObject *self)
{
    if (self->slot == NULL || self->pool == NULL)
        return PyUnicode_FromString("<Lease (cleared)>");
    PyObject *number = PyObject_GetAttr(self->slot, str_number);
    if (number == NULL)
        return NULL;
    PyObject *name = PyObject_GetAttr(self->pool, str_name);
    if (name == NULL) {
        Py_DECREF(number);
        return NULL;
    }
    PyObject *text = PyUnicode_FromFormat("<Lease of connection %S of %R %s>", number, name,
                                          lease_is_current(self) ? "active" : "returned");
    Py_DECREF(number);
    Py_DECREF(name);
    return text;
}

static PyObject *
lease_get_active(LeaseObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(lease_is_current(self));
}

static PyMethodDef lease_methods[] = {
    {"__enter__", (PyCFunction)lease_enter, METH_NOARGS, "Give the connection (ValueError once returned)."},
    {"__exit__", (PyCFunction)(void (*)(void))lease_exit, METH_FASTCALL,
     "Return the connection; the pool applies the discard rule to what ended the block."},
    {"release", (PyCFunction)(void (*)(void))lease_release, METH_FASTCALL | METH_KEYWORDS,
     "release(error=None)\n--\n\nReturn the connection as if the ``with`` block ended with ``error``.\n\n"
     ":raises ValueError: the lease was already returned, or the pool took it back."},
    {"__reduce__", (PyCFunction)lease_reduce, METH_NOARGS, NULL},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef lease_members[] = {
    {"conn", T_OBJECT, offsetof(LeaseObject, conn), READONLY, "The connection this checkout lends."},
    {"_pool", T_OBJECT, offsetof(LeaseObject, pool), READONLY, NULL},
    {"_slot", T_OBJECT, offsetof(LeaseObject, slot), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef lease_getset[] = {
    {"active", (getter)lease_get_active, NULL, "Whether this lease still holds its connection.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LeaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "geventpool.Lease",
    .tp_basicsize = sizeof(LeaseObject),
    .tp_dealloc = (destructor)lease_dealloc,
    .tp_repr = (reprfunc)lease_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Lease(pool, slot)\n--\n\n"
              "One checkout of one connection: ``with pool.get() as conn:``.\n\n"
              "Entering gives the connection; leaving returns it to the pool, which\n"
              "applies the discard rule to whatever ended the block.  :meth:`release`\n"
              "returns it early.  Belongs to the greenlet that checked it out.",
    .tp_traverse = (traverseproc)lease_traverse,
    .tp_clear = (inquiry)lease_clear,
    .tp_methods = lease_methods,
    .tp_members = lease_members,
    .tp_getset = lease_getset,
    .tp_new = lease_new,
    .tp_free = PyObject_GC_Del,
};

/* -- take and lend ---------------------------------------------------------------------------- */

/* Lend ``slot`` (a Slot, just taken for the caller) as Checkout.lend (_checkout.py) does when nothing
 * observes checkouts: a new lease, the slot's fields set.  Takes the reference ``now_obj``.
 * New reference, or NULL on error (nothing changed). */
static PyObject *
lend_slot(PyObject *table, PyObject *pool, PyObject *slot, PyObject *now_obj)
{
    PyObject *conn = FIELD(slot, s_conn), *old_uses = FIELD(slot, s_uses);
    PyObject *uses = NULL, *holder = NULL, *lease = NULL;
    if (conn == NULL || old_uses == NULL) {
        PyErr_SetString(PyExc_TypeError, "lend(): the slot has no connection");
        goto error;
    }
    uses = PyNumber_Add(old_uses, one);
    if (uses == NULL)
        goto error;
    holder = PyObject_CallNoArgs(getcurrent);
    if (holder == NULL)
        goto error;
    lease = lease_make(conn, pool, slot, table);
    if (lease == NULL)
        goto error;

    /* check-then-update: no Python code runs from taking the slot to here */
    PyObject *old[5];
    swap_field(slot, s_state, Py_NewRef(state_in_use), &old[0]);
    swap_field(slot, s_checked_out_at, now_obj, &old[1]);
    swap_field(slot, s_uses, uses, &old[2]);
    swap_field(slot, s_holder, holder, &old[3]);
    swap_field(slot, s_lease, Py_NewRef(lease), &old[4]);
    for (int i = 0; i < 5; i++)
        Py_XDECREF(old[i]);
    return lease;

error:
    Py_XDECREF(now_obj);
    Py_XDECREF(uses);
    Py_XDECREF(holder);
    return NULL;
}

static PyObject *
speedups_lend(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "lend(table, pool, slot, now)");
        return NULL;
    }
    PyObject *table = args[0], *pool = args[1], *slot = args[2], *now = args[3];
    if (!ready || !Py_IS_TYPE(table, table_type) || !Py_IS_TYPE(slot, slot_type) || !PyFloat_CheckExact(now))
        Py_RETURN_NONE;
    int observed = is_true(FIELD(table, t_observed));
    if (observed != 0)
        return observed < 0 ? NULL : Py_NewRef(Py_None);
    return lend_slot(table, pool, slot, Py_NewRef(now));
}


/* Put a slot taken from idle back where the Python code puts it (append), keeping an error. */
static void
put_back(PyObject *idle, PyObject *slot)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = PyObject_CallMethodOneArg(idle, str_append, slot);
    if (r == NULL)
        PyErr_WriteUnraisable(idle);
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

static PyObject *
speedups_take(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "take(table, pool)");
        return NULL;
    }
    PyObject *table = args[0], *pool = args[1];
    if (!ready || !Py_IS_TYPE(table, table_type))
        Py_RETURN_NONE;
    int flag = is_true(FIELD(table, t_fast));
    if (flag <= 0)
        return flag < 0 ? NULL : Py_NewRef(Py_None);
    flag = is_true(FIELD(table, t_observed));
    if (flag != 0)
        return flag < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *idle = FIELD(table, t_idle), *pop = FIELD(table, t_pop_idle);
    if (idle == NULL || pop == NULL)
        Py_RETURN_NONE;
    Py_ssize_t n = PyObject_Length(idle);
    if (n <= 0)
        return n < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *slot = PyObject_CallNoArgs(pop);
    if (slot == NULL)
        return NULL;
    double good_until, now;
    PyObject *now_obj = NULL;
    if (!Py_IS_TYPE(slot, slot_type) || FIELD(slot, s_conn) == NULL || FIELD(slot, s_uses) == NULL
        || !as_double(FIELD(slot, s_good_until), &good_until))
        goto not_here;
    int got = read_clock(table, &now, &now_obj);
    if (got < 0)
        goto error;
    if (got == 0 || now >= good_until)  /* a custom clock, or due for a check: the slow path */
        goto not_here;
    PyObject *lease = lend_slot(table, pool, slot, now_obj);  /* takes now_obj */
    if (lease == NULL) {
        put_back(idle, slot);
        Py_DECREF(slot);
        return NULL;
    }
    Py_DECREF(slot);
    return lease;

not_here:
    Py_XDECREF(now_obj);
    put_back(idle, slot);
    Py_DECREF(slot);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;

error:
    Py_XDECREF(now_obj);
    put_back(idle, slot);
    Py_DECREF(slot);
    return NULL;
}

/* -- setup ------------------------------------------------------------------------------------ */

static PyObject *
speedups_setup(PyObject *module, PyObject *args)
{
    PyObject *slot_cls, *table_cls, *waiter_cls, *idle, *in_use, *current, *clock;
    if (!PyArg_ParseTuple(args, "O!O!O!OOOO:setup", &PyType_Type, &slot_cls, &PyType_Type, &table_cls,
                          &PyType_Type, &waiter_cls, &idle, &in_use, &current, &clock))
        return NULL;
    PyTypeObject *st = (PyTypeObject *)slot_cls, *tt = (PyTypeObject *)table_cls;
    PyTypeObject *wt = (PyTypeObject *)waiter_cls;
    if (gp_offset_of(st, "conn", &s_conn) || gp_offset_of(st, "key", &s_key) || gp_offset_of(st, "state", &s_state)
        || gp_offset_of(st, "checked_out_at", &s_checked_out_at) || gp_offset_of(st, "uses", &s_uses)
        || gp_offset_of(st, "holder", &s_holder) || gp_offset_of(st, "lease", &s_lease)
        || gp_offset_of(st, "good_until", &s_good_until) || gp_offset_of(st, "expires_at", &s_expires_at)
        || gp_offset_of(st, "last_used", &s_last_used) || gp_offset_of(tt, "idle", &t_idle)
        || gp_offset_of(tt, "waiters", &t_waiters) || gp_offset_of(tt, "pop_idle", &t_pop_idle)
        || gp_offset_of(tt, "fast", &t_fast) || gp_offset_of(tt, "observed", &t_observed)
        || gp_offset_of(tt, "usage", &t_usage) || gp_offset_of(tt, "clock", &t_clock)
        || gp_offset_of(tt, "pinging", &t_pinging) || gp_offset_of(tt, "ping_window", &t_ping_window)
        || gp_offset_of(tt, "open", &t_open) || gp_offset_of(tt, "wake", &t_wake) || gp_offset_of(wt, "slot", &w_slot))
        return NULL;
    Py_XSETREF(slot_type, (PyTypeObject *)Py_NewRef(slot_cls));
    Py_XSETREF(table_type, (PyTypeObject *)Py_NewRef(table_cls));
    Py_XSETREF(waiter_type, (PyTypeObject *)Py_NewRef(waiter_cls));
    Py_XSETREF(state_idle, Py_NewRef(idle));
    Py_XSETREF(state_in_use, Py_NewRef(in_use));
    Py_XSETREF(getcurrent, Py_NewRef(current));
    Py_XSETREF(monotonic, Py_NewRef(clock));
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef speedups_methods[] = {
    {"setup", speedups_setup, METH_VARARGS,
     "setup(Slot, SlotTable, Waiter, IDLE, IN_USE, getcurrent, monotonic): find the fields; raise if "
     "the layout differs."},
    {"take", (PyCFunction)(void (*)(void))speedups_take, METH_FASTCALL,
     "take(table, pool): the fast checkout of ConnectionPool.get(), or None for the general path."},
    {"lend", (PyCFunction)(void (*)(void))speedups_lend, METH_FASTCALL,
     "lend(table, pool, slot, now): Checkout.lend() when nothing observes checkouts, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "geventpool._speedups",
    "The checkout and the Lease of geventpool in C (see geventpool/_accel.py).", -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&LeaseType) < 0)
        return NULL;
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(str_append, "append");
    INTERN(str_offer, "offer");
    INTERN(str_return, "_return");
    INTERN(str_table, "_table");
    INTERN(str_conn, "conn");
    INTERN(str_name, "name");
    INTERN(str_lease, "lease");
    INTERN(str_number, "number");
    INTERN(str_popleft, "popleft");
    INTERN(str_switch, "switch");
#undef INTERN
    if ((one = PyLong_FromLong(1)) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&LeaseType);
    if (PyModule_AddObject(module, "Lease", (PyObject *)&LeaseType) < 0) {
        Py_DECREF(&LeaseType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
