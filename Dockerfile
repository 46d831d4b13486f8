# Vigil's image: the manager (/vigil-manager), the scan engine (/vigil-scanner), which the scan
# Jobs run as `vigil-scanner scan-job`, and the view (/vigil), which the chart's dashboard runs as
# `vigil dashboard`. Static binaries on a distroless base, as a non-root user.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/vigil-manager ./cmd/manager && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/vigil-scanner ./cmd/vigil-scanner && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/vigil ./cmd/vigil

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vigil-manager /vigil-manager
COPY --from=build /out/vigil-scanner /vigil-scanner
COPY --from=build /out/vigil /vigil
USER 65532:65532
ENTRYPOINT ["/vigil"]
