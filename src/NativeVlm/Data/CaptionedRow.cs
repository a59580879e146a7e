namespace NativeVlm.Data;

/// <summary>
/// One entry of an image/caption JSON list (<c>[{"image": path, "caption": text}]</c>): the image's
/// bytes read from the path (made absolute against the JSON file's folder) and a caption that is not blank.
/// </summary>
public sealed record CaptionedRow(RowLocation Location, DatasetImage Image, string Caption);
