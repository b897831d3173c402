# Sourced by scripts/test and scripts/with-postgres: start_temp_postgres starts a throwaway
# PostgreSQL server in a temp dir (installing Debian's postgresql if it is missing), exports
# ATREST_TEST_DATABASE_URL (superuser `atrest`, trust auth, 127.0.0.1 only), ATREST_TEST_PGDATA and
# ATREST_TEST_PG_BIN, and stops and removes it when the calling shell exits.

pg_bin_dir() {
  local dir found=""
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && found="$dir"
  done
  echo "$found"
}

# initdb refuses to run as root; as root the server runs as Debian's `postgres` user.
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_temp_postgres() {
  local bin port
  bin="$(pg_bin_dir)"
  if [ -z "$bin" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
    bin="$(pg_bin_dir)"
  fi
  PG_TEMP_DIR="$(mktemp -d /tmp/atrest-pg.XXXXXX)"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_TEMP_DIR"; fi
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_pg_owner "$bin/initdb" -D "$PG_TEMP_DIR/data" -U atrest --auth=trust -E UTF8 --no-locale \
    >"$PG_TEMP_DIR/initdb.log"
  make_test_certificates "$PG_TEMP_DIR"
  # Roles atrest_tls and atrest_cert may only connect over TLS (the TLS tests prove encryption
  # with them); atrest_cert must also present a client certificate from the test CA.
  as_pg_owner sh -c "printf 'hostnossl all atrest_tls,atrest_cert all reject\nhostssl all atrest_cert all cert\n' | cat - '$PG_TEMP_DIR/data/pg_hba.conf' > '$PG_TEMP_DIR/hba' && mv '$PG_TEMP_DIR/hba' '$PG_TEMP_DIR/data/pg_hba.conf'"
  as_pg_owner "$bin/pg_ctl" -D "$PG_TEMP_DIR/data" -l "$PG_TEMP_DIR/server.log" -w \
    -o "-p $port -k $PG_TEMP_DIR -c listen_addresses=127.0.0.1 -c ssl=on \
        -c ssl_cert_file=$PG_TEMP_DIR/server.crt -c ssl_key_file=$PG_TEMP_DIR/server.key \
        -c ssl_ca_file=$PG_TEMP_DIR/ca.crt" \
    start >/dev/null
  PG_TEMP_BIN="$bin"
  trap stop_temp_postgres EXIT
  export ATREST_TEST_DATABASE_URL="postgres://atrest@127.0.0.1:$port/postgres"
  export ATREST_TEST_PGDATA="$PG_TEMP_DIR/data"
  export ATREST_TEST_PG_BIN="$bin"
  export ATREST_TEST_PG_CA="$PG_TEMP_DIR/ca.crt"
  export ATREST_TEST_PG_CLIENT_CERT="$PG_TEMP_DIR/client.crt"
  export ATREST_TEST_PG_CLIENT_KEY="$PG_TEMP_DIR/client.key"
}

# A throwaway CA, a server certificate for 127.0.0.1 and a client certificate for role
# atrest_cert (P-256, valid 2 days), so the server speaks TLS as a production one does; keys
# have mode 0600, as PostgreSQL and libpq demand.
make_test_certificates() {
  local dir="$1"
  as_pg_owner sh -c "cd '$dir' && umask 077 &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj '/CN=atrest test CA' -keyout ca.key -out ca.crt &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=127.0.0.1' \
      -keyout server.key -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > server.ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=atrest_cert' \
      -keyout client.key -out client.csr &&
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext &&
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile client.ext -out client.crt && chmod 644 ca.crt" 2>"$dir/openssl.log"
}

stop_temp_postgres() {
  as_pg_owner "$PG_TEMP_BIN/pg_ctl" -D "$PG_TEMP_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$PG_TEMP_DIR"
}
