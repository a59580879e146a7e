namespace NativeVlm.Training.Metrics;

/// <summary>One <see cref="ITrainingLog.Log"/> call: its step, epoch and a copy of its metrics.</summary>
public sealed record LoggedMetrics(long Step, double Epoch, IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// Keeps every logged step in memory, for the plot and the summary at the end of a run (a few numbers
/// per logging step: small next to anything else training holds).
/// </summary>
public sealed class MetricsHistory : ITrainingLog
{
    private readonly List<LoggedMetrics> _entries = [];

    public IReadOnlyList<LoggedMetrics> Entries => _entries;

    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics) =>
        _entries.Add(new LoggedMetrics(step, epoch, new Dictionary<string, double>(metrics)));

    /// <summary>Nothing: only metrics are kept.</summary>
    public void Event(string message)
    {
    }

    /// <summary>The last value logged for <paramref name="metric"/>, NaN or infinite included, and its step; null when never logged.</summary>
    public (long Step, double Value)? Last(string metric)
    {
        for (int i = _entries.Count - 1; i >= 0; i--)
        {
            if (_entries[i].Metrics.TryGetValue(metric, out double value))
            {
                return (_entries[i].Step, value);
            }
        }
        return null;
    }

    /// <summary>The steps at which <paramref name="metric"/> was logged with a finite value, and those values, in logging order.</summary>
    public (double[] Steps, double[] Values) Series(string metric)
    {
        var steps = new List<double>();
        var values = new List<double>();
        foreach (LoggedMetrics entry in _entries)
        {
            if (entry.Metrics.TryGetValue(metric, out double value) && double.IsFinite(value))
            {
                steps.Add(entry.Step);
                values.Add(value);
            }
        }
        return (steps.ToArray(), values.ToArray());
    }
}
