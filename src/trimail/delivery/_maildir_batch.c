/* The Maildir's small-message batch as one call that runs without the GIL.
 *
 * Optional, like trimail.protocol._speedups: setup.py builds it where a C compiler is, and
 * maildir.py falls back to the same steps in Python when it is not there.
 *
 * Why C: the batch is a run of system calls (per message: open, write, sync_file_range, fsync,
 * close, rename; then one fsync of new/), and in Python each of them gives the GIL back and
 * takes it again. Under load the worker thread then waits for the event loop's thread at every
 * step and the event loop's thread for the worker's, so both pay for context switches. Here
 * the whole batch runs in one GIL-free stretch.
 *
 * The steps and their order are exactly those of MaildirHandler._store_batch_python: write
 * every file into tmp/ and start its writeback, fsync and close each, rename each into new/,
 * then fsync new/ once; a file that fails a step is removed from tmp/; if the fsync of new/
 * fails, every file renamed by this batch is unlinked again (none may stay visible after the
 * 451), and those that cannot be are reported.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

typedef struct {
    PyObject *temporary_object; /* bytes: the file's path in tmp/ (held for the pointer below) */
    PyObject *final_object;     /* bytes: its path in new/ */
    const char *temporary;
    const char *final;
    Py_buffer content;
    int fd;
    int error; /* errno of the step that failed, 0 while all is well */
} Job;

static int
open_retrying(const char *path, int flags, mode_t mode)
{
    int fd;
    do {
        fd = open(path, flags, mode);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

static int
write_all(int fd, const char *data, Py_ssize_t length)
{
    while (length > 0) {
        ssize_t written = write(fd, data, (size_t)length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += written;
        length -= written;
    }
    return 0;
}

static int
fsync_retrying(int fd)
{
    int result;
    do {
        result = fsync(fd);
    } while (result < 0 && errno == EINTR);
    return result < 0 ? errno : 0;
}

/* Runs without the GIL: only C data (the paths' bytes objects are held, not touched).
 * Returns the errno of the directory fsync (0: none, or nothing was renamed); sets
 * stranded[i] to the errno of a renamed file's failed unlink. */
static int
run_batch(Job *jobs, Py_ssize_t count, const char *new_directory, int *stranded)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        Job *job = &jobs[i];
        const char *temporary = job->temporary;
        job->fd = open_retrying(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (job->fd < 0) {
            job->error = errno;
            continue;
        }
        job->error = write_all(job->fd, job->content.buf, job->content.len);
        if (job->error) {
            close(job->fd);
            job->fd = -1;
            unlink(temporary);
            continue;
        }
#ifdef SYNC_FILE_RANGE_WRITE
        /* Only a hint (see writeback.py): the fsync below reports any error. */
        sync_file_range(job->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    }
    for (Py_ssize_t i = 0; i < count; i++) { /* in order: oldest writeback first */
        Job *job = &jobs[i];
        if (job->fd < 0)
            continue;
        /* As in Python: a failed close fails the job too (its error is not known to be
         * reported by the fsync before it). */
        int error = fsync_retrying(job->fd);
        if (close(job->fd) < 0 && !error)
            error = errno;
        job->fd = -1;
        if (error) {
            job->error = error;
            unlink(job->temporary);
        }
    }
    int renamed = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Job *job = &jobs[i];
        if (job->error)
            continue;
        if (rename(job->temporary, job->final) < 0) {
            job->error = errno;
            unlink(job->temporary);
        } else {
            renamed = 1;
        }
    }
    if (!renamed)
        return 0;
    int directory_error;
    int directory = open_retrying(new_directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (directory < 0) {
        directory_error = errno;
    } else {
        directory_error = fsync_retrying(directory);
        if (close(directory) < 0 && !directory_error)
            directory_error = errno;
    }
    if (directory_error) {
        for (Py_ssize_t i = 0; i < count; i++) {
            if (!jobs[i].error && unlink(jobs[i].final) < 0)
                stranded[i] = errno;
        }
    }
    return directory_error;
}

/* Fills the answer allocated before the batch: ([errno per job], directory errno,
 * [(index, errno), ...]). Only a stranded file (after new/'s fsync failed, so every job has
 * failed anyway) needs a new allocation: a batch that succeeded cannot end in MemoryError
 * after its files became durable. Error numbers are small ints, which CPython caches. */
static PyObject *
fill_answer(PyObject *answer, const Job *jobs, Py_ssize_t count, int directory_error,
            const int *stranded)
{
    PyObject *errors = PyTuple_GET_ITEM(answer, 0);
    PyObject *left = PyTuple_GET_ITEM(answer, 2);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *error = PyLong_FromLong(jobs[i].error);
        if (error == NULL)
            return NULL;
        PyList_SET_ITEM(errors, i, error);
        if (stranded[i]) {
            PyObject *pair = Py_BuildValue("(ni)", i, stranded[i]);
            int appended = pair == NULL ? -1 : PyList_Append(left, pair);
            Py_XDECREF(pair);
            if (appended < 0)
                return NULL;
        }
    }
    PyObject *directory = PyLong_FromLong(directory_error);
    if (directory == NULL)
        return NULL;
    PyTuple_SET_ITEM(answer, 1, directory);
    Py_INCREF(answer);
    return answer;
}

/* An answer of the right shape, allocated while it may still fail harmlessly. */
static PyObject *
new_answer(Py_ssize_t count)
{
    PyObject *answer = PyTuple_New(3);
    if (answer == NULL)
        return NULL;
    PyObject *errors = PyList_New(count);
    PyObject *left = PyList_New(0);
    if (errors == NULL || left == NULL) {
        Py_XDECREF(errors);
        Py_XDECREF(left);
        Py_DECREF(answer);
        return NULL;
    }
    PyTuple_SET_ITEM(answer, 0, errors);
    PyTuple_SET_ITEM(answer, 2, left);
    return answer;
}

static PyObject *
store_batch(PyObject *module, PyObject *args)
{
    PyObject *job_sequence, *new_directory;
    if (!PyArg_ParseTuple(args, "OO&:store_batch", &job_sequence, PyUnicode_FSConverter,
                          &new_directory))
        return NULL;
    PyObject *result = NULL, *answer = NULL;
    Job *jobs = NULL;
    int *stranded = NULL;
    Py_ssize_t count = 0, ready = 0;
    /* A tuple copy: converting a path may run Python code, which must not resize our list. */
    PyObject *items = PySequence_Tuple(job_sequence);
    if (items == NULL)
        goto done;
    count = PyTuple_GET_SIZE(items);
    jobs = PyMem_Calloc(count ? count : 1, sizeof(Job));
    stranded = PyMem_Calloc(count ? count : 1, sizeof(int));
    if (jobs == NULL || stranded == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; ready < count; ready++) {
        Job *job = &jobs[ready];
        PyObject *item = PyTuple_GET_ITEM(items, ready), *content;
        if (!PyTuple_Check(item)) {
            PyErr_Format(PyExc_TypeError, "store_batch: a job must be a tuple, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto done;
        }
        if (!PyArg_ParseTuple(item, "O&O&O:store_batch job", PyUnicode_FSConverter,
                              &job->temporary_object, PyUnicode_FSConverter, &job->final_object,
                              &content))
            goto done;
        job->temporary = PyBytes_AS_STRING(job->temporary_object);
        job->final = PyBytes_AS_STRING(job->final_object);
        job->fd = -1;
        if (PyObject_GetBuffer(content, &job->content, PyBUF_SIMPLE) < 0) {
            job->content.obj = NULL;
            ready++; /* its paths are held: released below */
            goto done;
        }
    }
    answer = new_answer(count);
    if (answer == NULL)
        goto done;
    int directory_error;
    Py_BEGIN_ALLOW_THREADS
    directory_error = run_batch(jobs, count, PyBytes_AS_STRING(new_directory), stranded);
    Py_END_ALLOW_THREADS
    result = fill_answer(answer, jobs, count, directory_error, stranded);
done:
    Py_XDECREF(answer);
    for (Py_ssize_t i = 0; i < ready; i++) {
        Py_XDECREF(jobs[i].temporary_object);
        Py_XDECREF(jobs[i].final_object);
        if (jobs[i].content.obj != NULL)
            PyBuffer_Release(&jobs[i].content);
    }
    PyMem_Free(jobs);
    PyMem_Free(stranded);
    Py_XDECREF(items);
    Py_DECREF(new_directory);
    return result;
}

static PyMethodDef maildir_batch_methods[] = {
    {"store_batch", store_batch, METH_VARARGS,
     "store_batch([(tmp_path, new_path, content), ...], new_directory) -> "
     "(errno per job, errno of new/'s fsync, [(index, errno of its unlink), ...])."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef maildir_batch_module = {
    PyModuleDef_HEAD_INIT, "trimail.delivery._maildir_batch",
    "The Maildir's small-message batch without the GIL (optional).", 0, maildir_batch_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__maildir_batch(void)
{
    return PyModule_Create(&maildir_batch_module);
}
