module spire-cacerts.test/tools/admission-client

go 1.26.0
