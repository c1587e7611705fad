# Sourced by test/versions and test/package: print their checks as TAP.
#
#   check STATUS DESCRIPTION    "ok N - ..." if STATUS is 0, else "not ok"
#   checks_done                 the plan line; fails if any check did

n=0
failed=0

check()
{
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

checks_done()
{
	echo "1..$n"
	[ "$failed" = 0 ]
}
