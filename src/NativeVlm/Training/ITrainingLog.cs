namespace NativeVlm.Training;

/// <summary>
/// Where the trainer reports: <see cref="Log"/> once per logging step (and per evaluation, with
/// eval_-prefixed names) with metrics under TRL's names; <see cref="Event"/> for one-line notes
/// (checkpoint written, resumed from, interrupted).
/// </summary>
public interface ITrainingLog
{
    void Log(long step, double epoch, IReadOnlyDictionary<string, double> metrics);

    void Event(string message);
}
