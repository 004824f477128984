package kv

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Rate is a limit of Limit requests per Period with bursts of up to Burst.
type Rate struct {
	Limit  int
	Period time.Duration
	Burst  int
}

// Decision is the outcome of one Allow.
type Decision struct {
	Allowed    bool
	Remaining  int           // requests that could be made right now
	ResetAfter time.Duration // until the allowance is full again
	RetryAfter time.Duration // when denied: until the next request is allowed
}

// gcra is the generic cell rate algorithm: tat is the theoretical arrival
// time of the next request; a request is allowed while tat is at most
// (burst-1) emission intervals ahead of now.
func gcra(tat, now time.Time, r Rate) (newTAT time.Time, d Decision) {
	interval := r.Period / time.Duration(max(r.Limit, 1))
	burst := max(r.Burst, 1)
	maxAhead := interval * time.Duration(burst-1)
	if tat.Before(now) {
		tat = now
	}
	if ahead := tat.Sub(now); ahead > maxAhead {
		return tat, Decision{Allowed: false, ResetAfter: ahead, RetryAfter: ahead - maxAhead}
	}
	tat = tat.Add(interval)
	ahead := tat.Sub(now)
	remaining := int((maxAhead - ahead + interval) / interval)
	return tat, Decision{Allowed: true, Remaining: max(remaining, 0), ResetAfter: ahead}
}

// Allow implements the rate limit on the in-process store.
func (m *Memory) Allow(_ context.Context, key string, r Rate) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var tat time.Time
	if it, ok := m.live(key, now); ok {
		if ns, err := strconv.ParseInt(string(it.value), 10, 64); err == nil {
			tat = time.Unix(0, ns)
		}
	}
	newTAT, d := gcra(tat, now, r)
	if d.Allowed {
		m.put(key, strconv.AppendInt(nil, newTAT.UnixNano(), 10), newTAT.Sub(now)+time.Second, now)
	}
	return d, nil
}

// gcraScript runs gcra atomically in Redis, on Redis's clock, so every
// instance shares one limit. Times are in microseconds.
//
//nolint:gochecknoglobals // an immutable script, loaded by hash
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_ahead = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
if ahead > max_ahead then
  return {0, 0, ahead, ahead - max_ahead}
end
tat = tat + interval
ahead = tat - now
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(ahead / 1000) + 1000)
return {1, math.floor((max_ahead - ahead + interval) / interval), ahead, 0}`) //nolint:gochecknoglobals // immutable script

// Allow implements the rate limit on Redis.
func (r *Redis) Allow(ctx context.Context, key string, rt Rate) (Decision, error) {
	interval := rt.Period.Microseconds() / int64(max(rt.Limit, 1))
	maxAhead := interval * int64(max(rt.Burst, 1)-1)
	res, err := gcraScript.Run(ctx, r.c, []string{r.prefix + key}, interval, maxAhead).Int64Slice()
	if err != nil {
		return Decision{}, wrap(err)
	}
	if len(res) != 4 {
		return Decision{}, errors.New("kv: unexpected rate-limit reply")
	}
	return Decision{Allowed: res[0] == 1, Remaining: int(max(res[1], 0)),
		ResetAfter: time.Duration(res[2]) * time.Microsecond, RetryAfter: time.Duration(res[3]) * time.Microsecond}, nil
}

// Allow takes one request from key's allowance, on Redis while it answers
// and in-process otherwise.
func (f *Failover) Allow(ctx context.Context, key string, r Rate) (Decision, error) {
	if rd := f.active(); rd != nil {
		d, err := rd.Allow(ctx, key, r)
		if !errors.Is(err, ErrUnavailable) {
			return d, err
		}
		f.observe(ctx, err)
	}
	return f.memory.Allow(ctx, key, r)
}

// Seconds rounds d up to whole seconds, at least 1 when d > 0.
func Seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
