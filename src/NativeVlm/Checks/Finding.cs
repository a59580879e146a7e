namespace NativeVlm.Checks;

/// <summary>How bad a finding is: ok (a check that passed), warning (runs, but not as meant), error (breaks or silently misleads a run).</summary>
public enum FindingSeverity
{
    Ok,
    Warning,
    Error,
}

/// <summary>One check of a snapshot: its severity, the file and field it is about, and what was found.</summary>
/// <param name="Subject">The file and field, e.g. "config.json image_token_id" or "model.safetensors".</param>
public sealed record Finding(FindingSeverity Severity, string Subject, string Message)
{
    public static Finding Ok(string subject, string message) => new(FindingSeverity.Ok, subject, message);

    public static Finding Warning(string subject, string message) => new(FindingSeverity.Warning, subject, message);

    public static Finding Error(string subject, string message) => new(FindingSeverity.Error, subject, message);

    /// <summary>"error   config.json image_token_id: …", the severity padded so that subjects line up.</summary>
    public override string ToString() => $"{Severity.ToString().ToLowerInvariant(),-7} {Subject}: {Message}";
}
