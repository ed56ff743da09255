/* The least a tree's copy, hash, walk, clone or layer tar can cost on this machine, for
 * bench/build/floor.py (which compiles it: gcc -O2 -pthread floorfs.c -lcrypto). No
 * preserving beyond what COPY keeps (mode, mtime), no xattrs, no error recovery: each
 * subcommand does the syscalls the work needs and nothing else, so its time is a floor to
 * set strata's phases against, not a tool.
 *
 *   floorfs copy SRC DST THREADS   walk SRC (one fstatat per entry), make its directories,
 *                                  then each file on THREADS threads: open, open(O_EXCL),
 *                                  sendfile, futimens, close, close; directory times last
 *   floorfs hash SRC THREADS       SHA-256 of each file (open, read, close) on THREADS threads
 *   floorfs walk SRC               one fstatat per entry (getdents + lstat: a diff's least)
 *   floorfs clone SRC DST          a directory made per directory, a hard link per file
 *   floorfs tarhash SRC [BLOB]     a sorted walk writing 512-byte headers and the files' bytes,
 *                                  padded, into one SHA-256 (and BLOB, its writeback started
 *                                  every 32 MiB): a layer tar's diff ID on one thread
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1 << 20)

static void die(const char *what, const char *path) {
    fprintf(stderr, "floorfs: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

struct entry {
    char *path; /* relative to the root */
    struct stat st;
};
static struct entry *ents;
static size_t nents, cap;

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists `rel` under `root` depth first, names sorted, one fstatat per entry. */
static void walk(int rootfd, const char *rel) {
    int fd = openat(rootfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) die("open", rel);
    DIR *d = fdopendir(fd);
    if (!d) die("fdopendir", rel);
    char **names = NULL;
    size_t n = 0, c = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == c) names = realloc(names, (c = c ? 2 * c : 64) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        if (nents == cap) ents = realloc(ents, (cap = cap ? 2 * cap : 4096) * sizeof *ents);
        struct entry *x = &ents[nents++];
        if (asprintf(&x->path, "%s%s%s", rel, *rel ? "/" : "", names[i]) < 0) die("asprintf", rel);
        if (fstatat(dirfd(d), names[i], &x->st, AT_SYMLINK_NOFOLLOW)) die("fstatat", x->path);
        if (S_ISDIR(x->st.st_mode)) walk(rootfd, x->path);
        free(names[i]);
    }
    free(names);
    closedir(d);
}

static int srcfd, dstfd;
static atomic_size_t next;

static void *copy_files(void *arg) {
    (void)arg;
    for (size_t i; (i = atomic_fetch_add(&next, 1)) < nents;) {
        struct entry *x = &ents[i];
        if (!S_ISREG(x->st.st_mode)) continue;
        int in = openat(srcfd, x->path, O_RDONLY | O_NOFOLLOW);
        if (in < 0) die("open", x->path);
        int out = openat(dstfd, x->path, O_WRONLY | O_CREAT | O_EXCL, x->st.st_mode & 07777);
        if (out < 0) die("create", x->path);
        for (off_t left = x->st.st_size; left > 0;) {
            ssize_t n = sendfile(out, in, NULL, left);
            if (n <= 0) die("sendfile", x->path);
            left -= n;
        }
        struct timespec t[2] = {x->st.st_atim, x->st.st_mtim};
        if (futimens(out, t)) die("futimens", x->path);
        close(in);
        close(out);
    }
    return NULL;
}

static void *hash_files(void *arg) {
    unsigned char *buf = malloc(MIB), md[32];
    (void)arg;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    for (size_t i; (i = atomic_fetch_add(&next, 1)) < nents;) {
        struct entry *x = &ents[i];
        if (!S_ISREG(x->st.st_mode)) continue;
        int in = openat(srcfd, x->path, O_RDONLY | O_NOFOLLOW);
        if (in < 0) die("open", x->path);
        EVP_DigestInit_ex(h, EVP_sha256(), NULL);
        ssize_t n;
        while ((n = read(in, buf, MIB)) > 0) EVP_DigestUpdate(h, buf, n);
        if (n < 0) die("read", x->path);
        EVP_DigestFinal_ex(h, md, NULL);
        close(in);
    }
    EVP_MD_CTX_free(h);
    free(buf);
    return NULL;
}

static void on_threads(void *(*f)(void *), int threads) {
    pthread_t t[64];
    if (threads < 1 || threads > 64) threads = 1;
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, f, NULL);
    f(NULL);
    for (int i = 1; i < threads; i++) pthread_join(t[i], NULL);
}

/* The tar stream: into the hash, and into the blob with its writeback started early. */
static EVP_MD_CTX *tarh;
static int blob = -1;
static off_t blob_at, blob_started, tar_bytes;

static void emit(const void *p, size_t n) {
    EVP_DigestUpdate(tarh, p, n);
    tar_bytes += n;
    if (blob < 0) return;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(blob, (const char *)p + done, n - done);
        if (w <= 0) die("write", "blob");
        done += w;
    }
    blob_at += n;
    if (blob_at - blob_started >= 32 * MIB) {
        posix_fadvise(blob, blob_started, blob_at - blob_started, POSIX_FADV_DONTNEED);
        blob_started = blob_at;
    }
}

static void tarhash(void) {
    static unsigned char buf[MIB];
    for (size_t i = 0; i < nents; i++) {
        struct entry *x = &ents[i];
        unsigned char hdr[512] = {0};
        snprintf((char *)hdr, 100, "%s", x->path);
        snprintf((char *)hdr + 100, 8, "%07o", x->st.st_mode & 07777);
        snprintf((char *)hdr + 124, 12, "%011llo",
                 S_ISREG(x->st.st_mode) ? (unsigned long long)x->st.st_size : 0ULL);
        snprintf((char *)hdr + 136, 12, "%011llo", (unsigned long long)x->st.st_mtime);
        memcpy(hdr + 257, "ustar\0" "00", 8);
        hdr[156] = S_ISDIR(x->st.st_mode) ? '5' : S_ISLNK(x->st.st_mode) ? '2' : '0';
        unsigned sum = 256;
        for (int k = 0; k < 512; k++) sum += hdr[k];
        snprintf((char *)hdr + 148, 8, "%06o", sum);
        emit(hdr, 512);
        if (!S_ISREG(x->st.st_mode)) continue;
        int in = openat(srcfd, x->path, O_RDONLY | O_NOFOLLOW);
        if (in < 0) die("open", x->path);
        ssize_t n;
        off_t total = 0;
        while ((n = read(in, buf, MIB)) > 0) {
            emit(buf, n);
            total += n;
        }
        if (n < 0) die("read", x->path);
        close(in);
        static const unsigned char zero[512];
        if (total % 512) emit(zero, 512 - total % 512);
    }
    static const unsigned char end[1024];
    emit(end, sizeof end);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floorfs copy|hash|walk|clone|tarhash SRC [DST|THREADS|BLOB] [THREADS]\n");
        return 2;
    }
    const char *cmd = argv[1];
    srcfd = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (srcfd < 0) die("open", argv[2]);
    walk(srcfd, "");
    if (!strcmp(cmd, "walk")) return 0;
    if (!strcmp(cmd, "hash")) {
        on_threads(hash_files, argc > 3 ? atoi(argv[3]) : 1);
        return 0;
    }
    if (!strcmp(cmd, "tarhash")) {
        tarh = EVP_MD_CTX_new();
        EVP_DigestInit_ex(tarh, EVP_sha256(), NULL);
        if (argc > 3 && (blob = open(argv[3], O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0)
            die("create", argv[3]);
        tarhash();
        unsigned char md[32];
        EVP_DigestFinal_ex(tarh, md, NULL);
        if (blob >= 0 && close(blob)) die("close", argv[3]);
        printf("%02x%02x%02x%02x %lld\n", md[0], md[1], md[2], md[3], (long long)tar_bytes);
        return 0;
    }
    if (argc < 4) die("missing DST for", cmd);
    if (mkdir(argv[3], 0755)) die("mkdir", argv[3]);
    dstfd = open(argv[3], O_RDONLY | O_DIRECTORY);
    if (dstfd < 0) die("open", argv[3]);
    for (size_t i = 0; i < nents; i++) { /* the directories, in walk order */
        struct entry *x = &ents[i];
        if (S_ISDIR(x->st.st_mode) && mkdirat(dstfd, x->path, x->st.st_mode & 07777))
            die("mkdir", x->path);
        if (S_ISLNK(x->st.st_mode)) {
            char target[4096];
            ssize_t n = readlinkat(srcfd, x->path, target, sizeof target - 1);
            if (n < 0) die("readlink", x->path);
            target[n] = 0;
            if (symlinkat(target, dstfd, x->path)) die("symlink", x->path);
        }
    }
    if (!strcmp(cmd, "clone")) {
        for (size_t i = 0; i < nents; i++)
            if (S_ISREG(ents[i].st.st_mode) &&
                linkat(srcfd, ents[i].path, dstfd, ents[i].path, 0))
                die("link", ents[i].path);
        return 0;
    }
    if (strcmp(cmd, "copy")) die("unknown command", cmd);
    on_threads(copy_files, argc > 4 ? atoi(argv[4]) : 1);
    for (size_t i = nents; i-- > 0;) { /* directory times once their entries are made */
        struct entry *x = &ents[i];
        struct timespec t[2] = {x->st.st_atim, x->st.st_mtim};
        if (S_ISDIR(x->st.st_mode) && utimensat(dstfd, x->path, t, AT_SYMLINK_NOFOLLOW))
            die("utimensat", x->path);
    }
    return 0;
}
