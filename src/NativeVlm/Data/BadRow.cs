namespace NativeVlm.Data;

/// <summary>Why a row cannot be used; the key of <see cref="DatasetSummary.SkippedByReason"/>.</summary>
public enum BadRowReason
{
    /// <summary>A value the format requires is null or absent (a message's role, a text item's text, the images list).</summary>
    MissingField,

    /// <summary>A value of another kind than the format's (a JSON number where a string belongs).</summary>
    WrongType,

    /// <summary>A value outside the format: an unknown content type, a prompt with no message, an empty image path.</summary>
    InvalidValue,

    /// <summary>A completion (chosen, rejected, assistant turn, caption) with no text, or only white space.</summary>
    EmptyCompletion,

    /// <summary>An image entry that is null or has no bytes, or an image file that cannot be read.</summary>
    MissingImage,

    /// <summary>The image items in the messages do not match the row's images one for one.</summary>
    ImageCountMismatch,

    /// <summary>An image's bytes that cannot be decoded (corrupt, truncated, of another kind, over the pixel limit) or processed.</summary>
    UndecodableImage,

    /// <summary>A DPO prompt, image tokens included, longer than max_prompt_length: truncating it would cut image tokens.</summary>
    PromptOverMaxPromptLength,

    /// <summary>A DPO prompt, image tokens included, that fills max_length and leaves no room for a completion token.</summary>
    PromptOverMaxLength,

    /// <summary>An SFT conversation whose image tokens reach past max_length: truncating it would cut them.</summary>
    ImageTokensOverMaxLength,

    /// <summary>An SFT conversation that, truncated to max_length, keeps no token the loss counts.</summary>
    NoLossTokenWithinMaxLength,
}

/// <summary>Where a row comes from: the file and the row's 0-based index inside that file.</summary>
public readonly record struct RowLocation(string FilePath, long Row)
{
    public override string ToString() => $"{FilePath}: row {Row}";
}

/// <summary>A row that was not used, with what is wrong with it: "file: row 17: prompt[0].role is null".</summary>
public sealed record BadRow(RowLocation Location, BadRowReason Reason, string Detail)
{
    public override string ToString() => $"{Location}: {Detail}";
}
