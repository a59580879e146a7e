using NativeVlm.Training;
using NativeVlm.Training.Metrics;
using Xunit;

namespace NativeVlm.Tests.Training.Metrics;

public class CompositeTrainingLogTests
{
    /// <summary>Writes what it is given into a shared list, so that the order across sinks shows.</summary>
    private sealed class RecordingSink(string name, List<string> calls) : ITrainingLog, IDisposable
    {
        public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics) =>
            calls.Add(FormattableString.Invariant($"{name} log {step} {epoch} {string.Join(",", metrics.Select(m => FormattableString.Invariant($"{m.Key}={m.Value}")))}"));

        public void Event(string message) => calls.Add($"{name} event {message}");

        public void Dispose() => calls.Add($"{name} disposed");
    }

    [Fact]
    public void Every_call_reaches_every_sink_in_order_and_dispose_reaches_the_disposable_ones()
    {
        var calls = new List<string>();
        var history = new MetricsHistory(); // not disposable
        using (var log = new CompositeTrainingLog(new RecordingSink("a", calls), history, new RecordingSink("b", calls)))
        {
            log.Log(3, 0.5, new Dictionary<string, double> { ["loss"] = 0.25 });
            log.Event("resumed");
        }

        Assert.Equal(["a log 3 0.5 loss=0.25", "b log 3 0.5 loss=0.25", "a event resumed", "b event resumed", "a disposed", "b disposed"], calls);
        LoggedMetrics logged = Assert.Single(history.Entries);
        Assert.Equal((3L, 0.5), (logged.Step, logged.Epoch));
        Assert.Equal(new Dictionary<string, double> { ["loss"] = 0.25 }, logged.Metrics);
    }
}
