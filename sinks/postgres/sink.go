package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/engine"
	"github.com/sluicehq/sluice/sinks"
	"github.com/sluicehq/sluice/sinks/internal/commit"
)

const (
	checkpointTable = "sluice_checkpoints"
	// taskTable holds one checkpoint row per task of a pipeline split into
	// tasks (tasks.go).
	taskTable = "sluice_task_checkpoints"
	// defaultDeadLetterTable keeps dead letters when dead-letter names no
	// table: {topic} uses it as the forwarder's outbox.
	defaultDeadLetterTable = "sluice_dead_letters"
	// stageTable is the upsert mode's per-transaction temporary table.
	stageTable = "sluice_stage"
	// seqColumn orders staged rows so the last record of a key wins.
	seqColumn = "sluice_seq"
	// closeTimeout bounds a rollback or close that has no caller's ctx.
	closeTimeout = 10 * time.Second
)

// Sink is the exactly-once PostgreSQL sink. It holds one connection and is
// not safe for concurrent use.
type Sink struct {
	dsn    string
	table  pgx.Identifier
	schema pgx.Identifier // prefix for the checkpoint and dead-letter tables
	cols   []column
	keys   []string // upsert-key; empty = append
	create bool
	dead   string // the dead-letter table's name, in schema
	log    *slog.Logger

	conn     *pgx.Conn
	pipeline string
	tx       pgx.Tx
	staged   commit.Staged // epoch with an open transaction
	fence    commit.Fence
	seq      int64  // upsert: staged row counter
	hasStage bool   // upsert: temp table created in this transaction
	hasDead  bool   // dead-letter table known to exist
	deadInTx bool   // dead-letter table created or used in the open transaction
	known    uint64 // the epoch this instance last saw stored
	tasks    bool   // opened by OpenTasks: rounds commit with CommitTasks

	binary   bool       // every column has an encoding: Write streams binary COPY itself
	copyBuf  []byte     // the binary COPY writer's chunk, kept between Writes
	copySegs []borrowed // and its list of borrowed payloads
}

// Option changes a sink New makes.
type Option func(*Sink)

// DeadLetterTable names the table dead letters go to, in the target
// table's schema (dead-letter: {table: NAME}); "" keeps
// sluice_dead_letters.
func DeadLetterTable(name string) Option {
	return func(s *Sink) {
		if name != "" {
			s.dead = name
		}
	}
}

// New checks cfg and returns a sink logging to log (nil: slog.Default());
// it connects in Open.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Sink, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres sink: dsn is empty; write dsn: postgres://USER:PASSWORD@HOST:5432/DATABASE")
	}
	if _, err := pgx.ParseConfig(cfg.DSN); err != nil {
		return nil, fmt.Errorf("postgres sink: dsn: %w", err)
	}
	if cfg.Table == "" {
		return nil, errors.New("postgres sink: table is empty; write table: NAME or SCHEMA.NAME")
	}
	table := pgx.Identifier(strings.Split(cfg.Table, "."))
	if len(table) > 2 || slices.Contains(table, "") {
		return nil, fmt.Errorf("postgres sink: table %q: write NAME or SCHEMA.NAME", cfg.Table)
	}
	cols, err := parseColumns(cfg.Columns)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %w", err)
	}
	for _, k := range cfg.UpsertKey {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.name == k }) {
			return nil, fmt.Errorf("postgres sink: upsert-key %q is not one of the columns; add it to columns or remove it from upsert-key", k)
		}
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sink{
		dsn: cfg.DSN, table: table, cols: cols, keys: slices.Clone(cfg.UpsertKey), create: cfg.CreateTable, dead: defaultDeadLetterTable,
		log:    log.With("sink", "postgres", "table", cfg.Table),
		staged: commit.Staged{Sink: "postgres sink"},
	}
	if len(table) == 2 {
		s.schema = table[:1]
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

func (s *Sink) ident(name string) string {
	return append(slices.Clone(s.schema), name).Sanitize()
}

// Open connects (or reconnects), creates the checkpoint table and, with
// create-table, the target table, checks that the target has the mapped
// columns, and returns the pipeline's checkpoint. ctx bounds only this call.
func (s *Sink) Open(ctx context.Context, pipeline string) (uint64, engine.Positions, error) {
	s.rollback()
	s.pipeline, s.tasks = pipeline, false
	s.fence = commit.Fence{Sink: "postgres sink", Pipeline: pipeline, Where: s.ident(checkpointTable),
		Advice: "run one instance of a pipeline per table, and do not edit its checkpoint row"}
	if err := s.connect(ctx); err != nil {
		return 0, nil, err
	}
	if err := s.ensureTables(ctx, false); err != nil {
		return 0, nil, s.classify(err, "prepare tables")
	}
	epoch, at, err := s.stored(ctx, s.conn)
	if err != nil {
		return 0, nil, s.classify(err, "read checkpoint")
	}
	s.known = epoch
	return epoch, at, nil
}

func (s *Sink) connect(ctx context.Context) error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return s.classify(err, "connect")
	}
	s.conn = conn
	s.hasDead = false
	return nil
}

// ensureTables creates what is missing: the checkpoint table, with tasks
// the task checkpoint table, and with create-table the target.
func (s *Sink) ensureTables(ctx context.Context, tasks bool) error {
	ddl := []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		pipeline text PRIMARY KEY,
		epoch bigint NOT NULL,
		positions jsonb NOT NULL,
		committed_at timestamptz NOT NULL DEFAULT now())`, s.ident(checkpointTable))}
	if tasks {
		ddl = append(ddl, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		pipeline text NOT NULL,
		task integer NOT NULL,
		epoch bigint NOT NULL,
		positions jsonb NOT NULL,
		committed_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (pipeline, task))`, s.ident(taskTable)))
	}
	if s.create {
		var defs []string
		for _, c := range s.cols {
			defs = append(defs, pgx.Identifier{c.name}.Sanitize()+" "+c.createType())
		}
		if len(s.keys) > 0 {
			defs = append(defs, "PRIMARY KEY ("+quoteAll(s.keys)+")")
		}
		ddl = append(ddl, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", s.table.Sanitize(), strings.Join(defs, ", ")))
	}
	for _, q := range ddl {
		if _, err := s.conn.Exec(ctx, q); err != nil && !isDuplicateTable(err) {
			return err
		}
	}
	return s.describe(ctx)
}

// isDuplicateTable is a lost race of two CREATE TABLE IF NOT EXISTS.
func isDuplicateTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P07" || pe.Code == "23505")
}

// describe learns the target's column types and checks the mapping against
// them, so a wrong name fails at start with a sentence, not mid-batch.
func (s *Sink) describe(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, `SELECT a.attname::text, a.atttypid::int8, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, s.table.Sanitize())
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return fmt.Errorf("table %s does not exist; create it, or set create-table: true", s.table.Sanitize())
		}
		return err
	}
	type info struct {
		oid uint32
		typ string
	}
	have := map[string]info{}
	for rows.Next() {
		var name, typ string
		var oid int64
		if err := rows.Scan(&name, &oid, &typ); err != nil {
			return err
		}
		have[name] = info{uint32(oid), typ}
	}
	if err := rows.Err(); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return fmt.Errorf("table %s does not exist; create it, or set create-table: true", s.table.Sanitize())
		}
		return err
	}
	for i := range s.cols {
		c := &s.cols[i]
		in, ok := have[c.name]
		if !ok {
			return fmt.Errorf("table %s has no column %q (mapped from %s); add the column or change columns", s.table.Sanitize(), c.name, c.source())
		}
		c.oid, c.typ = in.oid, in.typ
		if err := c.checkCast(); err != nil {
			return err
		}
		if err := c.checkType(); err != nil {
			return err
		}
	}
	s.binary = true
	for i := range s.cols {
		c := &s.cols[i]
		c.planEncoding(s.conn.TypeMap())
		if c.enc == encNone && s.binary {
			s.binary = false
			s.log.Info("this column's type makes the sink COPY through pgx, at more CPU per row; it encodes rows itself when key and value go to bytea, text, varchar, char, json or jsonb, topic to a text type, partition and offset to smallint, integer or bigint, timestamp to timestamptz or timestamp (JSON fields: any type they take)",
				"column", c.name, "type", c.typ, "source", c.source())
		}
	}
	if len(s.keys) > 0 {
		var n int
		sorted := slices.Sorted(slices.Values(s.keys))
		err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique
			AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
			     WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = $2::text[]`,
			s.table.Sanitize(), sorted).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("upsert-key (%s) needs a unique index on exactly those columns of %s; run CREATE UNIQUE INDEX ON %s (%s)",
				strings.Join(s.keys, ", "), s.table.Sanitize(), s.table.Sanitize(), quoteAll(s.keys))
		}
	}
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// stored reads the pipeline's checkpoint (0, nil if it has none).
func (s *Sink) stored(ctx context.Context, q querier) (uint64, engine.Positions, error) {
	var epoch int64
	var raw []byte
	err := q.QueryRow(ctx, fmt.Sprintf("SELECT epoch, positions FROM %s WHERE pipeline = $1", s.ident(checkpointTable)), s.pipeline).Scan(&epoch, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	var at engine.Positions
	if err := json.Unmarshal(raw, &at); err != nil {
		return 0, nil, fmt.Errorf("checkpoint of pipeline %q in %s holds positions that do not decode (%w); restore the row", s.pipeline, s.ident(checkpointTable), err)
	}
	return uint64(epoch), at, nil
}

// begin opens the epoch's transaction on first use.
func (s *Sink) begin(ctx context.Context, epoch uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.pipeline == "" {
		return errors.New("postgres sink: Write before Open")
	}
	if err := s.staged.CheckWrite(epoch); err != nil {
		return err
	}
	if s.tx != nil {
		if s.conn.IsClosed() {
			s.rollback()
			return engine.Retryable(fmt.Errorf("postgres sink: the connection closed while epoch %d was staged; its rows are gone: abort and write the batch again", epoch))
		}
		return nil
	}
	if err := s.connect(ctx); err != nil {
		return err
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return s.classify(err, "begin")
	}
	s.tx, s.staged.Epoch, s.seq, s.hasStage = tx, epoch, 0, false
	return nil
}

// Write COPYs records into the epoch's open transaction.
func (s *Sink) Write(ctx context.Context, epoch uint64, records []engine.Record) error {
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	if len(records) == 0 {
		return nil
	}
	names := make([]string, len(s.cols), len(s.cols)+1)
	for i, c := range s.cols {
		names[i] = c.name
	}
	target := s.table
	if len(s.keys) > 0 {
		if err := s.createStage(ctx); err != nil {
			return s.fail(err, "stage rows")
		}
		target = pgx.Identifier{"pg_temp", stageTable}
		names = append(names, seqColumn)
	}
	if s.binary {
		return s.copyBinary(ctx, target, names, records)
	}
	src := &rowSource{b: rowBuilder{cols: s.cols}, recs: records, seq: &s.seq, upsert: len(s.keys) > 0}
	if _, err := s.tx.CopyFrom(ctx, target, names, src); err != nil {
		if src.err != nil {
			s.rollback()
			return fmt.Errorf("postgres sink: %w", src.err)
		}
		return s.fail(err, fmt.Sprintf("copy %d rows", len(records)))
	}
	return nil
}

// copyBinary COPYs records in PostgreSQL's binary format, encoded by
// copyReader as the connection sends them.
func (s *Sink) copyBinary(ctx context.Context, target pgx.Identifier, names []string, records []engine.Record) error {
	var seq *int64
	if len(s.keys) > 0 {
		seq = &s.seq
	}
	r := newCopyReader(s.cols, records, seq, s.copyBuf, s.copySegs)
	_, err := s.conn.PgConn().CopyFrom(ctx, r, fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", target.Sanitize(), quoteAll(names)))
	s.copyBuf, s.copySegs = r.close()
	if r.err != nil {
		// The server saw a CopyFail carrying r.err; the record is the news.
		s.rollback()
		return fmt.Errorf("postgres sink: %w", r.err)
	}
	if err != nil {
		return s.fail(err, fmt.Sprintf("copy %d rows", len(records)))
	}
	return nil
}

// createStage creates the upsert mode's temporary table with the mapped
// columns' types and no constraints; it is dropped at commit or rollback.
func (s *Sink) createStage(ctx context.Context) error {
	if s.hasStage {
		return nil
	}
	_, err := s.tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA; ALTER TABLE pg_temp.%s ADD COLUMN %s bigint",
		stageTable, quoteAll(s.colNames()), s.table.Sanitize(), stageTable, seqColumn))
	if err != nil {
		return err
	}
	s.hasStage = true
	return nil
}

func (s *Sink) colNames() []string {
	names := make([]string, len(s.cols))
	for i, c := range s.cols {
		names[i] = c.name
	}
	return names
}

// rowSource feeds records to COPY without building all rows first.
type rowSource struct {
	b      rowBuilder
	recs   []engine.Record
	i      int
	row    []any
	seq    *int64
	upsert bool
	err    error
}

func (r *rowSource) Next() bool {
	if r.err != nil || r.i >= len(r.recs) {
		return false
	}
	// A fresh slice per row: pgx may still hold the previous one.
	row, err := r.b.values(&r.recs[r.i], make([]any, 0, len(r.b.cols)+1))
	if err != nil {
		r.err = err
		return false
	}
	if r.upsert {
		*r.seq++
		row = append(row, *r.seq)
	}
	r.row = row
	r.i++
	return true
}

func (r *rowSource) Values() ([]any, error) { return r.row, nil }
func (r *rowSource) Err() error             { return r.err }

// WriteRejected COPYs dead letters into the dead-letter table inside the
// epoch's transaction, so they commit with the batch. It implements
// engine.DeadLetterSink.
func (s *Sink) WriteRejected(ctx context.Context, epoch uint64, rejected []engine.Rejected) error {
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	if len(rejected) == 0 {
		return nil
	}
	if !s.hasDead && !s.deadInTx {
		// In the transaction: if it rolls back, so does the table's creation.
		_, err := s.tx.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
			pipeline text NOT NULL, epoch bigint NOT NULL,
			topic text, "partition" integer, "offset" bigint,
			key bytea, value bytea, headers jsonb, "timestamp" timestamptz,
			reason text, plugin text, rejected_at timestamptz NOT NULL DEFAULT now())`, s.ident(s.dead)))
		if err != nil {
			return s.fail(err, "create "+s.dead)
		}
	}
	rows := make([][]any, len(rejected))
	for i, r := range rejected {
		rec := sinks.DeadLetter(r)
		headers, err := json.Marshal(headerJSON(rec.Headers))
		if err != nil {
			return fmt.Errorf("postgres sink: dead letter headers: %w", err)
		}
		var ts any
		if !rec.Time.IsZero() {
			ts = rec.Time
		}
		rows[i] = []any{s.pipeline, int64(epoch), rec.Topic, rec.Partition, rec.Offset, rec.Key, rec.Value, headers, ts, r.Reason, r.Plugin}
	}
	_, err := s.tx.CopyFrom(ctx, append(slices.Clone(s.schema), s.dead),
		[]string{"pipeline", "epoch", "topic", "partition", "offset", "key", "value", "headers", "timestamp", "reason", "plugin"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return s.fail(err, "copy dead letters")
	}
	s.deadInTx = true
	return nil
}

type header struct {
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
}

// headerJSON keeps header values readable as strings when they are UTF-8.
func headerJSON(hs []engine.Header) []header {
	out := make([]header, len(hs))
	for i, h := range hs {
		out[i].Key = h.Key
		// jsonb refuses \u0000, so NUL bytes go base64 too.
		if utf8.Valid(h.Value) && !bytes.ContainsRune(h.Value, 0) {
			v := string(h.Value)
			out[i].Value = &v
		} else {
			out[i].ValueBase64 = h.Value
		}
	}
	return out
}

// Commit stores the checkpoint guarded by the previous epoch and commits
// the epoch's transaction.
func (s *Sink) Commit(ctx context.Context, epoch uint64, until engine.Positions) error {
	if s.tasks {
		return errors.New("postgres sink: Commit after OpenTasks; a pipeline split into tasks commits with CommitTasks")
	}
	if err := s.staged.CheckCommit(epoch); err != nil {
		return err
	}
	if s.known != epoch-1 && s.known != epoch {
		s.rollback()
		return s.fence.Error(epoch, fmt.Sprintf("this instance last saw epoch %d stored, so another instance committed since", s.known))
	}
	if err := s.begin(ctx, epoch); err != nil {
		return err
	}
	pos, err := json.Marshal(until)
	if err != nil {
		s.rollback()
		return fmt.Errorf("postgres sink: encode positions: %w", err)
	}
	var tag pgconn.CommandTag
	if epoch == 1 {
		tag, err = s.tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (pipeline, epoch, positions) VALUES ($1, 1, $2) ON CONFLICT (pipeline) DO NOTHING",
			s.ident(checkpointTable)), s.pipeline, pos)
	} else {
		tag, err = s.tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET epoch = $2, positions = $3, committed_at = now() WHERE pipeline = $1 AND epoch = $2 - 1",
			s.ident(checkpointTable)), s.pipeline, int64(epoch), pos)
	}
	if err != nil {
		return s.fail(err, "store checkpoint")
	}
	if tag.RowsAffected() != 1 {
		stored, at, err := s.stored(ctx, s.tx)
		s.rollback()
		if err != nil {
			return s.classify(err, "read checkpoint")
		}
		if commit.Check(epoch, until, stored, at) == commit.Done {
			s.known = epoch
			return nil // a retry after a lost acknowledgement
		}
		return s.fence.Error(epoch, fmt.Sprintf("the table holds epoch %d", stored))
	}
	if err := s.finish(ctx, fmt.Sprintf("epoch %d", epoch)); err != nil {
		return err
	}
	s.known = epoch
	return nil
}

// finish merges the staged rows (upsert mode) and commits the open
// transaction, whose checkpoints are stored; what names it in errors
// ("epoch 7", or "round 3" split into tasks).
func (s *Sink) finish(ctx context.Context, what string) error {
	if s.hasStage {
		if _, err := s.tx.Exec(ctx, s.mergeSQL()); err != nil {
			return s.fail(err, "merge staged rows")
		}
	}
	err := s.tx.Commit(ctx)
	deadInTx := s.deadInTx
	s.tx, s.staged.Epoch, s.deadInTx = nil, 0, false
	if err == nil {
		s.hasDead = s.hasDead || deadInTx
		return nil
	}
	if s.conn.IsClosed() || isConnError(err) {
		// COMMIT was sent; whether it took effect only Open can tell.
		return engine.Retryable(fmt.Errorf("postgres sink: %w: %s: %w", engine.ErrNotCommitted, what, err))
	}
	return s.classify(err, "commit")
}

// mergeSQL moves the staged rows into the target, one row per key: the
// last staged wins, as it would with one INSERT per record.
func (s *Sink) mergeSQL() string {
	names := quoteAll(s.colNames())
	keys := quoteAll(s.keys)
	var set []string
	for _, c := range s.cols {
		if !slices.Contains(s.keys, c.name) {
			q := pgx.Identifier{c.name}.Sanitize()
			set = append(set, q+" = EXCLUDED."+q)
		}
	}
	action := "DO NOTHING"
	if len(set) > 0 {
		action = "DO UPDATE SET " + strings.Join(set, ", ")
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT DISTINCT ON (%s) %s FROM pg_temp.%s ORDER BY %s, %s DESC ON CONFLICT (%s) %s",
		s.table.Sanitize(), names, keys, names, stageTable, keys, seqColumn, keys, action)
}

// Abort rolls back the epoch's transaction.
func (s *Sink) Abort(ctx context.Context, epoch uint64) error {
	s.rollback()
	return nil
}

// Close rolls back anything staged and closes the connection.
func (s *Sink) Close() error {
	s.rollback()
	if s.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	err := s.conn.Close(ctx)
	s.conn = nil
	return err
}

func (s *Sink) rollback() {
	if s.tx != nil {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		if err := s.tx.Rollback(ctx); err != nil && !s.conn.IsClosed() {
			s.log.Warn("rollback failed; closing the connection", "err", err)
			s.conn.Close(ctx)
		}
		cancel()
	}
	s.tx, s.staged.Epoch, s.hasStage, s.deadInTx = nil, 0, false, false
}

// fail rolls the epoch back and classifies err.
func (s *Sink) fail(err error, what string) error {
	s.rollback()
	return s.classify(err, what)
}

// classify wraps err with what failed and marks transient failures (the
// server unreachable or restarting, a serialisation conflict) as retryable.
func (s *Sink) classify(err error, what string) error {
	err = fmt.Errorf("postgres sink: %s: %w", what, oneLine{err})
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources
			pe.Code == "40001", pe.Code == "40P01", // serialisation failure, deadlock
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03": // shutdown, starting up
			return engine.Retryable(err)
		}
		return err
	}
	if isConnError(err) || (s.conn != nil && s.conn.IsClosed()) {
		return engine.Retryable(err)
	}
	return err
}

// oneLine keeps an error's chain but says it on one line: pgx puts each
// address it tried on a line of its own ("\n\t"), which splits a log
// line or the command's one-line error.
type oneLine struct{ error }

func (e oneLine) Error() string {
	return strings.NewReplacer("\n\t", "; ", "\n", "; ").Replace(e.error.Error())
}

func (e oneLine) Unwrap() error { return e.error }

func isConnError(err error) bool {
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// CommittedDeadLetters reads back the dead letters of the lowest committed
// epoch above after, in the order they were written. It implements
// sinks.Outbox.
func (s *Sink) CommittedDeadLetters(ctx context.Context, after uint64) (uint64, []engine.Record, error) {
	if s.conn == nil {
		return 0, nil, errors.New("postgres sink: dead letters read before Open")
	}
	if s.tx != nil {
		return 0, nil, fmt.Errorf("postgres sink: dead letters read while epoch %d is staged", s.staged.Epoch)
	}
	var exists bool
	if err := s.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.ident(s.dead)).Scan(&exists); err != nil {
		return 0, nil, s.classify(err, "look for "+s.dead)
	}
	if !exists {
		return 0, nil, nil
	}
	var epoch int64
	err := s.conn.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(min(epoch), 0) FROM %s WHERE pipeline = $1 AND epoch > $2 AND epoch <= $3`,
		s.ident(s.dead)), s.pipeline, int64(after), int64(s.known)).Scan(&epoch)
	if err != nil {
		return 0, nil, s.classify(err, "find dead letters")
	}
	if epoch == 0 {
		return 0, nil, nil
	}
	// ctid gives back COPY's order within the epoch as long as rows are
	// only appended, which is all the sink does; order is a courtesy, not
	// something exactly-once depends on.
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT topic, "partition", "offset", key, value, headers, "timestamp"
		FROM %s WHERE pipeline = $1 AND epoch = $2 ORDER BY ctid`, s.ident(s.dead)), s.pipeline, epoch)
	if err != nil {
		return 0, nil, s.classify(err, "read dead letters")
	}
	var out []engine.Record
	for rows.Next() {
		var (
			r       engine.Record
			topic   *string
			part    *int32
			offset  *int64
			headers []header
			ts      *time.Time
		)
		if err := rows.Scan(&topic, &part, &offset, &r.Key, &r.Value, &headers, &ts); err != nil {
			rows.Close()
			return 0, nil, s.classify(err, "read dead letters")
		}
		if topic != nil {
			r.Topic = *topic
		}
		if part != nil {
			r.Partition = *part
		}
		if offset != nil {
			r.Offset = *offset
		}
		if ts != nil {
			r.Time = *ts
		}
		for _, h := range headers {
			v := h.ValueBase64
			if h.Value != nil {
				v = []byte(*h.Value)
			}
			r.Headers = append(r.Headers, engine.Header{Key: h.Key, Value: v})
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, s.classify(err, "read dead letters")
	}
	return uint64(epoch), out, nil
}

// ForgetDeadLetters deletes the pipeline's dead letters of committed
// epochs up to through. It implements sinks.Outbox.
func (s *Sink) ForgetDeadLetters(ctx context.Context, through uint64) error {
	if s.conn == nil {
		return errors.New("postgres sink: dead letters deleted before Open")
	}
	_, err := s.conn.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE pipeline = $1 AND epoch <= $2`, s.ident(s.dead)),
		s.pipeline, int64(min(through, s.known)))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: nothing was ever rejected
		return nil
	}
	if err != nil {
		return s.classify(err, "delete forwarded dead letters")
	}
	return nil
}
