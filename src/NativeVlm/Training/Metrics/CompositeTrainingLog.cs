namespace NativeVlm.Training.Metrics;

/// <summary>
/// Hands every call to each of its sinks, in the order given (the console last, say, so that a line
/// reporting a step comes after the files that hold it). Owns them: disposing it disposes each that is
/// disposable, which closes the files.
/// </summary>
public sealed class CompositeTrainingLog(params IReadOnlyList<ITrainingLog> sinks) : ITrainingLog, IDisposable
{
    public void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics)
    {
        foreach (ITrainingLog sink in sinks)
        {
            sink.Log(step, epoch, metrics);
        }
    }

    public void Event(string message)
    {
        foreach (ITrainingLog sink in sinks)
        {
            sink.Event(message);
        }
    }

    public void Dispose()
    {
        foreach (IDisposable sink in sinks.OfType<IDisposable>())
        {
            sink.Dispose();
        }
    }
}
