module tracker.local/emulators/handy-spanner

go 1.26.0

require github.com/gcpug/handy-spanner v0.4.0

require (
	github.com/MakeNowJust/memefish v0.0.0-20190917025248-4520997b3960 // indirect
	github.com/golang/protobuf v1.3.2 // indirect
	github.com/google/uuid v1.1.1 // indirect
	github.com/mattn/go-sqlite3 v1.11.0 // indirect
	golang.org/x/net v0.0.0-20191207000613-e7e4b65ae663 // indirect
	golang.org/x/sys v0.0.0-20191206220618-eeba5f6aabab // indirect
	golang.org/x/text v0.3.2 // indirect
	google.golang.org/genproto v0.0.0-20191206224255-0243a4be9c8f // indirect
	google.golang.org/grpc v1.25.1 // indirect
)
