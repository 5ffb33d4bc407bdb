// Package migrate helps users move from Kaniko to kiln: the migration
// dry-run (--migration-dry-run or KILN_MIGRATION_DRY_RUN=true), the
// environment preflight, and `executor migrate scan PATH…`.
//
// # Dry-run exit codes
//
//	0  kiln would run the invocation as is
//	3  something must change first (unsupported flag or context, Dockerfile
//	   error, environment finding of severity "error")
//	1  the invocation is invalid, exactly as a build would reject it
//
// # JSON report (--migration-report=json), schemaVersion 2
//
// Fields are only added within a schema version, never renamed or removed.
//
//	schemaVersion  2 (2 replaced dockerfile.unusedStages with builtStages)
//	verdict        "ready" | "needs-changes" | "invalid"
//	exitCode       0 | 3 | 1, matching verdict
//	source         scan only: {file, kind ("gitlab-ci"|"kubernetes"|"tekton"), job, container, image}
//	flags[]        every flag given, in command-line order, then environment-supplied ones:
//	               {flag (spelling as given, or "env NAME"), values[] (secrets as ***),
//	               disposition ("native"|"emulated"|"accepted-no-op"|"unsupported"),
//	               buildkit (what it becomes), reason (why no effect / refused),
//	               pending (what is not implemented yet), replacedBy (for deprecated spellings)}
//	error          the validation error when verdict is "invalid"
//	context        {flag ("--context"|"--bucket"), value, scheme ("" for a directory), dir}
//	dockerfile     {path, dockerignore, stages, target, baseImages[], builtStages[] (as Kaniko builds them)}
//	credentials[]  {registry, for ("push"|"cache"), source (where it would come from; never the secret), found}
//	preflight[]    {check, severity ("ok"|"info"|"warning"|"error"), seen, why, fix}
//	changes[]      scan only: {setting, current, required, why}
//	notes[]        {severity, topic, message}
//
// `migrate scan --format=json` prints {schemaVersion, invocations[] (reports
// as above), summary {files, invocations, ready, needsChanges, invalid}} and
// exits 0 when every invocation is ready, 3 otherwise, 1 on bad arguments.
package migrate
