#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* linkpar SRC DST THREADS: SRC/pkgNN/modNN/* linked into DST (made), the 200 leaf dirs split over threads */
static char dirs[400][64]; static int ndirs; static atomic_int next; static int s, d;
static void *run(void *a) {
    (void)a;
    for (int i; (i = atomic_fetch_add(&next, 1)) < ndirs;) {
        int sf = openat(s, dirs[i], O_RDONLY | O_DIRECTORY), df;
        mkdirat(d, dirs[i], 0755); df = openat(d, dirs[i], O_RDONLY | O_DIRECTORY);
        DIR *dd = fdopendir(dup(sf)); struct dirent *e;
        while ((e = readdir(dd))) {
            if (e->d_name[0] == '.') continue;
            struct stat st; fstatat(sf, e->d_name, &st, AT_SYMLINK_NOFOLLOW);
            if (linkat(sf, e->d_name, df, e->d_name, 0)) perror("link");
        }
        closedir(dd); close(sf); close(df);
    }
    return NULL;
}
int main(int argc, char **argv) {
    s = open(argv[1], O_RDONLY | O_DIRECTORY); mkdir(argv[2], 0755); d = open(argv[2], O_RDONLY | O_DIRECTORY);
    int t = atoi(argv[3]);
    for (int p = 0; p < 20; p++) { char x[16]; sprintf(x, "pkg%02d", p); mkdirat(d, x, 0755);
        for (int m = 0; m < 10; m++) sprintf(dirs[ndirs++], "pkg%02d/mod%02d", p, m); }
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t th[8]; for (int i = 1; i < t; i++) pthread_create(&th[i], NULL, run, NULL);
    run(NULL); for (int i = 1; i < t; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%d threads %.1f ms\n", t, (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
}
