# msa-doctor in a container, for the Job, CronJob and serve Deployment in deploy/.
#   docker build -t msa-doctor --build-arg MSA_DOCTOR_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm msa-doctor version
# The build stage compiles without the practice stack (`demo` needs a Prometheus binary that
# the image does not ship); the runtime stage is distroless (glibc and CA certificates, no
# shell) and runs as the non-root user 65532.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The commit for `msa-doctor version` (.git is not copied into the build context).
ARG MSA_DOCTOR_COMMIT=unknown
ENV MSA_DOCTOR_COMMIT=${MSA_DOCTOR_COMMIT}
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src
COPY checks checks
COPY docs docs
COPY src src
RUN cargo build --release --locked --no-default-features --bin msa-doctor \
    && cp target/release/msa-doctor /msa-doctor

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /msa-doctor /usr/local/bin/msa-doctor
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/msa-doctor"]
CMD ["check"]
