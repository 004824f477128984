package postgres

import "github.com/prometheus/client_golang/prometheus"

// poolCollector exposes the pool's counters to Prometheus.
type poolCollector struct {
	db                                            *DB
	acquired, idle, total, max, waits, waitSecond *prometheus.Desc
}

// NewPoolCollector returns a Prometheus collector of db's pool statistics.
func NewPoolCollector(db *DB) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("elile_db_pool_"+name, help, nil, nil)
	}
	return &poolCollector{db: db,
		acquired: d("acquired_connections", "Connections in use."), idle: d("idle_connections", "Idle connections."),
		total: d("total_connections", "Open connections."), max: d("max_connections", "Pool size limit."),
		waits:      d("empty_acquire_total", "Acquires that had to wait for a connection."),
		waitSecond: d("acquire_wait_seconds_total", "Time spent waiting for connections."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.acquired, c.idle, c.total, c.max, c.waits, c.waitSecond} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.pool.Stat()
	ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(c.waitSecond, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
}
