FROM alpine
ARG foo
COPY $foo .
RUN echo $PATH $set_at_run_time
ENV PATH=$PATH:/tmp/bin
FROM alpine-home
WORKDIR $HOME
