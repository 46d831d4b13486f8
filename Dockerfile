# Vigil's image: the manager (/vigil-manager) and the vigil command (/vigil), which the scan Jobs
# run as `vigil scan-job`. Static binaries on a distroless base, as a non-root user.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/vigil-manager ./cmd/manager && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/vigil ./cmd/vigil

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vigil-manager /vigil-manager
COPY --from=build /out/vigil /vigil
USER 65532:65532
ENTRYPOINT ["/vigil"]
