/* chancy_examples--1.0.sql: example jobs */

\echo Use "CREATE EXTENSION chancy_examples" to load this file. \quit

-- The seed's greet(*, name): logs "Hello, <name>!" and returns the greeting.
CREATE FUNCTION greet(kwargs jsonb) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'greet' LANGUAGE C STRICT;

-- A job that does nothing, for measuring chancy itself.
CREATE FUNCTION noop(kwargs jsonb) RETURNS void
	AS 'MODULE_PATHNAME', 'noop' LANGUAGE C STRICT;

-- greet's defaults, like @job(queue="default", priority=1, max_attempts=3,
-- kwargs={"name": "World"}).
SELECT chancy_define_job('greet', 'greet(jsonb)', queue => 'default',
						 priority => 1, max_attempts => 3,
						 kwargs => '{"name": "World"}');
